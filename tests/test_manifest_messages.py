"""Validation a newcomer meets (issue 30): variable problems reported with the rest in one pass (and a line that
says more may follow), no problem printed twice, and `en_US` read as the BCP 47 tag `en-US`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli import EXIT_INVALID, main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestInvalid) as caught:
        load_manifest(path)
    return [f"{p.line}:{p.path}: {p.message}" for p in caught.value.problems]


def test_variable_problems_come_with_the_rest_in_one_pass(write_campaign: Callable[..., Path]) -> None:
    path = write_campaign("""\
        campaign: vars-test
        variables:
          market: [us, de]
        videos:
          - id: ad-{market}
            shots:
              - prompt: "A {bad placeholder} bee"
                steps: lots
              - frames: 9
        """)
    found = problems_of(path)
    assert found == [
        "2:variables: videos[0] could not be expanded for every combination: their values that hold a placeholder "
        "are checked once these problems are fixed, so more problems may follow",
        "7:videos[0].shots[0].prompt: '{bad placeholder}' is not a placeholder: write {name} or {name.field} with a "
        "variable's name, and {{ or }} for a literal brace",
        "8:videos[0].shots[0].steps: expected an integer, got the string 'lots'",
        "9:videos[0].shots[1]: missing required key 'prompt'",
    ]


def test_a_missing_field_and_a_type_problem_in_one_pass(write_campaign: Callable[..., Path]) -> None:
    path = write_campaign("""\
        campaign: vars-test
        variables:
          market:
            - {id: us, currency: USD}
            - {id: de}
        videos:
          - id: ad-{market}
            shots:
              - prompt: "Price in {market.currency}"
                frames: "{market.id}"
        """)
    found = problems_of(path)
    assert "9:videos[0].shots[0].prompt: {market.currency}: the market value 'de' has no field 'currency'; it has id " \
           "(with market=de)" in found
    assert "10:videos[0].shots[0].frames: expected an integer, got the string 'us' (with market=us)" in found
    assert any("more problems may follow" in f for f in found)  # the de combination could not be checked further


def test_no_problem_is_printed_twice(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_campaign("""\
        campaign: twice
        schedule: "every day"
        videos:
          - id: v
            shots:
              - prompt: A bee.
                caption: ""
        """)
    assert main(["validate", str(path)]) == EXIT_INVALID
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": error: ")[1].split(":")[0] for line in lines] == ["schedule", "videos[0].shots[0].caption"]
    assert "the caption is blank" in lines[1]


def test_en_us_is_read_as_the_bcp47_tag(write_campaign: Callable[..., Path]) -> None:
    ok = write_campaign("""\
        campaign: lang
        videos:
          - id: v
            language: en_US
            shots: [{prompt: A bee., caption: Hello}]
        """)
    assert load_manifest(ok).videos[0].language == "en-US"
    bad = write_campaign("""\
        campaign: lang
        videos:
          - id: v
            language: english!
            shots: [{prompt: A bee., caption: Hello}]
        """, name="bad.yaml")
    [found] = problems_of(bad)
    assert found == "4:videos[0].language: language 'english!' is not a BCP 47 tag such as en, de or pt-BR " \
                    "(en_US is read as en-US)"
