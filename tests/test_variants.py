"""Manifest variables: expansion at load time, located errors with their combination, the plan's sharing,
the report's grouping. The multi-market example's run end to end (and re-run: nothing executed) is checked in
tests/test_formats.py, which runs it once for both its format and its variant checks."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.variables import MAX_EXPANDED_JOBS, Variant

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "multi-market.yaml"


def invalid(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["validate", str(path)]) == 2
    return capsys.readouterr().out.splitlines()


# --- expansion ---------------------------------------------------------------------------------------------


def test_example_expands_every_template_once_per_combination() -> None:
    c = load_manifest(EXAMPLE)
    assert [i.id for i in c.images] == ["sofa-navy", "sofa-mustard", "sofa-wide"]
    assert c.image("sofa-mustard").edits[0].params == {"select_prompt": "sofa", "prompt": "mustard yellow linen"}
    assert c.image("sofa-navy").variant == Variant("sofa-{product}", (("product", "navy"),))
    assert c.image("sofa-wide").variant is None  # uses no variable: one image for everyone
    assert [v.id for v in c.videos] == [f"teaser-{p}-{m}" for p in ("navy", "mustard") for m in ("de", "fr", "us")] + [
        "skyline-us"]
    fr = next(v for v in c.videos if v.id == "teaser-mustard-fr")
    assert fr.variant == Variant("teaser-{product}-{market}", (("product", "mustard"), ("market", "fr")))
    assert fr.title is not None and fr.title.text == "Le printemps au loft"
    assert fr.shots[1].prompt == "A mustard yellow linen sofa in a sunlit Paris loft, the camera slowly orbits it"
    assert fr.shots[1].image == "sofa-mustard"
    assert fr.shots[0].prompt == "A bee on a flower in spring sunlight."
    skyline = c.videos[-1]
    assert skyline.variant == Variant("skyline-{market}", (("market", "us"),))
    assert skyline.shots[0].prompt == "The Brooklyn skyline at dusk, seen from a loft window"
    # the manifest as written is what `campaign submit` uploads: templates, not their expansion
    assert c.raw["videos"][0]["id"] == "teaser-{product}-{market}" and len(c.raw["videos"]) == 2


def test_for_each_restricts_or_lists_combinations_and_braces_escape(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: for-each-forms
        variables:
          market: [de, fr, jp]
          size: [s, m]
        videos:
          - id: all-{market}-{size}
            shots: [{prompt: "Say {{hello}} in {market}, size {size} }}"}]
          - id: narrowed-{market}-{size}
            for_each: {market: [jp, de]}
            shots: [{prompt: A bee.}]
          - id: listed-{market}
            for_each: [{market: fr, size: m}, {market: de, size: s}]
            shots: [{prompt: A bee.}]
          - id: by-name-{size}-{market}
            for_each: [size, market]
            shots: [{prompt: "A bee."}]
          - id: plain
            shots: [{prompt: "Literal {{braces}} stay."}]
        """)
    c = load_manifest(path)
    ids = [v.id for v in c.videos]
    assert ids[:6] == ["all-de-s", "all-de-m", "all-fr-s", "all-fr-m", "all-jp-s", "all-jp-m"]
    assert c.videos[0].shots[0].prompt == "Say {hello} in de, size s }"
    # narrowing keeps the variables' own order of values, not the order for_each lists them in
    assert ids[6:10] == ["narrowed-de-s", "narrowed-de-m", "narrowed-jp-s", "narrowed-jp-m"]
    listed = [v for v in c.videos if v.id.startswith("listed-")]
    assert [(v.id, v.variant.combination if v.variant else None) for v in listed] == [
        ("listed-fr", (("market", "fr"), ("size", "m"))), ("listed-de", (("market", "de"), ("size", "s")))]
    by_name = [v.id for v in c.videos if v.id.startswith("by-name-")]
    assert by_name == ["by-name-s-de", "by-name-m-de", "by-name-s-fr", "by-name-m-fr", "by-name-s-jp", "by-name-m-jp"]
    assert c.videos[-1].id == "plain" and c.videos[-1].variant is None
    assert c.videos[-1].shots[0].prompt == "Literal {braces} stay."


def test_without_variables_text_is_literal_and_templates_are_errors(write_campaign,  # type: ignore[no-untyped-def]
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ok = write_campaign("""\
        campaign: no-variables
        videos:
          - id: one
            shots: [{prompt: "A sign that reads {open}."}]
        """, name="ok.yaml")
    assert load_manifest(ok).videos[0].shots[0].prompt == "A sign that reads {open}."
    bad = write_campaign("""\
        campaign: no-variables
        videos:
          - id: one-{market}
            for_each: [market]
            shots: [{prompt: A bee.}]
        """, name="bad.yaml")
    out = invalid(bad, capsys)
    assert out == [
        f"{bad}:3:9: error: videos[0].id: id 'one-{{market}}' is not a valid id: use a-z, 0-9, '-' and '_', 1 to 63 "
        "characters, starting with a letter or digit (placeholders need a top-level `variables:` block)",
        f"{bad}:4:15: error: videos[0].for_each: for_each needs a top-level `variables:` block",
    ]


# --- errors at the template, with the combination -------------------------------------------------------------

BAD = """\
    campaign: bad-variants
    variables:
      market:
        - {id: de, city: Berlin}
        - {id: fr}
      size: [s, m]
      label: [ok, Not Ok]
      odd: ["{x}"]
    assets:
      sofa: assets/sofa.png
    images:
      - id: hero-{market}
        from: "{markt}"
        edits: [{upscale-fast: {}}]
      - id: pic-{size}
        from: sofa-{size}
        edits: [{upscale-fast: {}}]
    videos:
      - id: v-{market}
        shots:
          - prompt: In {market.city}
      - id: same
        for_each: [size]
        shots: [{prompt: A bee.}]
      - id: x-{label}
        shots: [{prompt: "50% off {today"}]
      - id: y-{label}
        shots: [{prompt: A bee., frames: 10}]
      - id: z-{market}
        for_each: {market: [de, it]}
        shots: [{prompt: A bee.}]
      - id: w-{size}
        for_each: [market]
        shots: [{prompt: A bee.}]
      - id: u-{size}
        for_each: [{size: s}, {market: de}]
        shots: [{prompt: A bee.}]
      - id: b-{odd}
        shots: [{prompt: A bee.}]
    """


def test_every_problem_is_located_at_its_template_with_the_combination(
        write_campaign, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign(BAD)
    out = invalid(path, capsys)
    expected = [
        # what could not be expanded is said once, first: more problems may follow once these are fixed
        ("2:1", "variables", "images[0], videos[0], videos[2], videos[4], videos[5], videos[6] could not be expanded "
                             "for every combination: their values that hold a placeholder are checked once these "
                             "problems are fixed, so more problems may follow"),
        ("13:11", "images[0].from", "unknown variable 'markt' in {markt}; did you mean 'market'? (variables: market, "
                                    "size, label, odd)"),
        ("16:11", "images[1].from", "'sofa-m' names no asset or image; did you mean 'sofa'? (with size=m)"),
        ("16:11", "images[1].from", "'sofa-s' names no asset or image; did you mean 'sofa'? (with size=s)"),
        ("21:17", "videos[0].shots[0].prompt", "{market.city}: the market value 'fr' has no field 'city'; it has id "
                                               "(with market=fr)"),
        ("22:9", "videos[1].id", "duplicate video id 'same' (first made at line 22 by same with size=s) (with size=m)"),
        ("26:22", "videos[2].shots[0].prompt", "'{' is not a placeholder: write {name} or {name.field} with a "
                                               "variable's name, and {{ or }} for a literal brace"),
        ("27:9", "videos[3].id", "'y-Not Ok' is not a valid id"),
        # the same problem in every combination is one line
        ("28:38", "videos[3].shots[0].frames", "cogvideox-5b cannot make 10 frames: the rule is 8N+1 with 1<=N<=6 "
                                               "(9, 17, 25, 33, 41, 49) (720x480 at 8 fps) (in all 2 combinations, e.g. label=ok)"),
        ("30:24", "videos[4].for_each.market", "market has no value 'it' (values: de, fr)"),
        ("33:15", "videos[5].for_each", "the item uses size but for_each does not list it"),
        ("36:27", "videos[6].for_each[1]", "this combination does not give size, which the item uses"),
        ("38:9", "videos[7].id", "expanded id 'b-{x}' is not a valid id: use a-z, 0-9, '-' and '_', 1 to 63 "
                                 "characters, starting with a letter or digit (with odd={x})"),
    ]
    assert len(out) == len(expected), "\n".join(out)
    for (where, path_in, message), line in zip(expected, out, strict=True):
        assert line.startswith(f"{path}:{where}: error: {path_in}: {message}"), line


def test_the_variables_block_itself_is_checked(write_campaign, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: bad-block
        variables:
          market: [de, fr, de]
          bad-name: [x]
        videos:
          - id: v-{market}
            shots: [{prompt: A bee.}]
          - id: w
            for_each: 3
            shots: [{prompt: A bee.}]
        """)
    out = invalid(path, capsys)
    assert [o.split(": error: ")[0].rsplit(":", 2)[1:] for o in out] == [["2", "1"], ["3", "20"], ["4", "3"], ["9", "15"]], out
    assert "videos[0], videos[1] could not be expanded for every combination" in out[0], out
    assert "more problems may follow" in out[0]
    assert "market has the value 'de' twice (first at market[0])" in out[1]
    assert "variable name 'bad-name' is not allowed" in out[2]
    assert "videos[1].for_each: expected a list or a mapping, got int 3" in out[3]  # checked as written, in the same pass
    path = write_campaign("""\
        campaign: bad-block
        variables:
          market: [{city: Berlin}]
          empty: []
        videos:
          - id: v-{market}
            shots: [{prompt: A bee.}]
        """, name="shape.yaml")
    out = invalid(path, capsys)
    assert any(":3:12: error: variables.market[0]: missing required key 'id'" in o for o in out), out
    assert any(":4:10: error: variables.empty: needs at least 1 item(s)" in o for o in out), out
    assert len(out) == 3 and "more problems may follow" in out[0], out  # the template that cannot expand says so


def test_the_expansion_limit_is_refused_with_its_count_before_any_work(
        write_campaign, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    values = ", ".join(str(i) for i in range(40))
    path = write_campaign(f"""\
        campaign: too-many
        variables:
          a: [{values}]
          b: [{values}]
          c: [{values}]
        videos:
          - id: v-{{a}}-{{b}}-{{c}}
            shots: [{{prompt: A bee.}}, {{prompt: A tree.}}]
        """)
    out_dir = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out_dir), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{path}:2:1: error: variables: the manifest expands to {40 ** 3 * 3} jobs (images, "
                           f"videos and shots), more than the {MAX_EXPANDED_JOBS} allowed; largest: videos[0] "
                           f"(v-{{a}}-{{b}}-{{c}}: {40 ** 3} variant(s))"), line
    assert not out_dir.exists()  # refused before anything was built


# --- plan, run, report ------------------------------------------------------------------------------------------


def test_plan_shows_the_expansion_and_makes_shared_work_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLE), "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["variants"] == [
        {"kind": "image", "template": "sofa-{product}", "variables": ["product"], "count": 2,
         "ids": ["sofa-navy", "sofa-mustard"]},
        {"kind": "video", "template": "teaser-{product}-{market}", "variables": ["product", "market"], "count": 6,
         "ids": [f"teaser-{p}-{m}" for p in ("navy", "mustard") for m in ("de", "fr", "us")]},
        {"kind": "video", "template": "skyline-{market}", "variables": ["market"], "count": 1, "ids": ["skyline-us"]},
    ]
    jobs = doc["plan"]["jobs"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for j in jobs:
        by_kind.setdefault(j["kind"], []).append(j)
    # one enhancement per distinct prompt: the shared first shot and the skyline (the product shot is not enhanced)
    assert sorted(j["spec"]["prompt"] for j in by_kind["enhance"]) == [
        "A bee on a flower in spring sunlight.", "The Brooklyn skyline at dusk, seen from a loft window"]
    assert [j["spec"]["image_id"] for j in by_kind["image"]] == ["sofa-navy", "sofa-mustard", "sofa-wide"]
    # the shared first shot: six clip jobs with one content key; five wait for the first and reuse its output
    bee = [j for j in by_kind["clip"] if j["spec"]["shot"] == 0 and j["spec"]["video_id"].startswith("teaser-")]
    assert len(bee) == 6 and len({j["key"] for j in bee}) == 1
    assert all(bee[0]["id"] in j["deps"] for j in bee[1:])
    assert len({j["key"] for j in by_kind["clip"]}) == 1 + 6 + 1
    assert main(["plan", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "video template teaser-{product}-{market}: 6 variant(s) over product x market" in text
    assert f"distinct outputs: {len({j['key'] for j in jobs})} (the other " in text


def test_report_groups_variants_by_template_with_their_own_errors(write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: grouped
        variables:
          product:
            - {id: good, asset: sofa}
            - {id: bad, asset: broken}
          market: [de, fr]
        defaults: {enhance: false, video: {frames: 9, steps: 2}}
        assets:
          sofa: assets/sofa.png
          broken: assets/broken.png
        images:
          - id: "{product}-big"
            from: "{product.asset}"
            edits: [{upscale-fast: {}}]
        videos:
          - id: ad-{product}-{market}
            shots: [{prompt: "A sofa for {market}", image: "{product}-big"}]
          - id: plain
            shots: [{prompt: A bee.}]
        """)
    # a real failure, for one product: 3 MP is a valid image, but more than upscale-fast takes (pipeline/manifest/image_files.py)
    Image.new("RGB", (2000, 1500), (90, 60, 40)).save(path.parent / "assets" / "broken.png")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    report, run_dir = _latest(out, "grouped")
    assert report["status"] == "partial"
    assert [(g["kind"], g["template"], g["count"], g["failed"]) for g in report["variants"]] == [
        ("image", "{product}-big", 2, 1), ("video", "ad-{product}-{market}", 4, 2)]
    videos = {v["id"]: v for v in report["videos"]}
    assert videos["ad-good-de"]["errors"] == [] and videos["ad-good-de"]["path"]
    bad = videos["ad-bad-fr"]
    assert bad["combination"] == {"product": "bad", "market": "fr"}
    assert [(e["job"], e["error"]) for e in bad["errors"]] == [("clip:ad-bad-fr/01", "DependencyFailed"),
                                                              ("video:ad-bad-fr", "DependencyFailed")]
    assert videos["plain"]["template"] is None and videos["plain"]["combination"] is None
    [bad_image] = [i for i in report["images"] if i["id"] == "bad-big"]
    assert [e["job"] for e in bad_image["errors"]] == ["image:bad-big"]

    page = _Cards()
    page.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    # each template's variants sit together under its heading, each card with its combination and own errors
    assert page.groups == {
        "{product}-big": [("good-big", 0), ("bad-big", 1)],
        "ad-{product}-{market}": [("ad-good-de", 0), ("ad-good-fr", 0), ("ad-bad-de", 2), ("ad-bad-fr", 2)],
    }
    assert page.ungrouped == ["plain"]


def _latest(out: Path, campaign: str) -> tuple[dict[str, Any], Path]:
    latest = json.loads((out / "runs" / campaign / "latest.json").read_text())
    path = out / "runs" / campaign / latest["report"]
    return json.loads(path.read_text()), path.parent


class _Cards(HTMLParser):
    """report.html -> {template: [(card id, error items)]} and the ids of cards outside any template group."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, list[tuple[str, int]]] = {}
        self.ungrouped: list[str] = []
        self._template: str | None = None
        self._depth = 0  # div depth inside the current template group
        self._card: list[Any] | None = None
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("class") == "template":
            self._template, self._depth = a.get("data-template"), 0
            self.groups[str(self._template)] = []
        elif tag == "div" and self._template is not None:
            self._depth += 1
        if tag == "div" and a.get("class") == "card":
            self._card = ["", 0]
            if self._template is not None:
                self.groups[self._template].append(("", 0))
        elif tag == "h3" and self._card is not None:
            self._in_h3 = True
        elif tag == "li" and self._card is not None and self._template is not None:
            card_id, n = self.groups[self._template][-1]
            self.groups[self._template][-1] = (card_id, n + 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._in_h3 = False
        if tag == "div" and self._template is not None:
            if self._depth == 0:
                self._template = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_h3 and self._card is not None and not self._card[0] and data.strip():
            self._card[0] = data.strip()
            if self._template is not None:
                _, n = self.groups[self._template][-1]
                self.groups[self._template][-1] = (self._card[0], n)
            else:
                self.ungrouped.append(self._card[0])


def test_variant_json_round_trip() -> None:
    v = Variant("t-{a}-{b}", (("a", "1"), ("b", "x")))
    assert Variant.from_json(json.loads(json.dumps(v.to_json()))) == v


def test_expansion_errors_raise_manifest_invalid_not_a_traceback(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: raises
        variables: {m: [a]}
        videos:
          - id: v-{m.x}
            shots: [{prompt: A bee.}]
        """)
    with pytest.raises(ManifestInvalid) as err:
        load_manifest(path)
    assert [p.message for p in err.value.problems] == [
        "videos[0] could not be expanded for every combination: their values that hold a placeholder are checked "
        "once these problems are fixed, so more problems may follow",
        "{m.x}: the values of m are plain values without fields; write {m}"]
