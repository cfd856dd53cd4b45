"""A newcomer's first hour (issue 30): one cost estimate everywhere, the user's setup and usage errors as one plain
line with their own exit codes (never "internal error"), a check that could not run does not pass, CDK context
errors without a traceback, a held run superseded by the next one, and third-party noise kept quiet."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from small_campaign import write_small_campaign

from pipeline.backends.environment import third_party_quiet
from pipeline.cli import EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_SETUP, main

ROOT = Path(__file__).resolve().parents[1]
NO_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
          "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL",
          "CAMPAIGN_STABILITY_REGION", "CAMPAIGN_STATE_MACHINE_ARN", "CAMPAIGN_INPUT_BUCKET")
ARN = "arn:aws:states:us-west-2:123456789012:stateMachine:campaign"


def write(folder: Path, *, extra: str = "", prompt: str = "A bee on a flower.", name: str = "small-launch") -> Path:
    return write_small_campaign(folder, name=name, extra=extra, prompt=prompt)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine with no AWS configuration at all: no credentials, no region, no profile, no metadata service."""
    for name in NO_AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small campaign run once (every job real: preview clips encoded, a video assembled), shared."""
    folder = tmp_path_factory.mktemp("ran")
    manifest, out = write(folder / "c"), folder / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_OK
    return manifest, out


# --- one estimate --------------------------------------------------------------------------------------------


def test_plan_text_json_and_the_run_summary_give_one_estimate(ran: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    manifest, out = ran
    capsys.readouterr()
    assert main(["plan", str(manifest), "--out", str(out), "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert all(doc["cached"].values())
    estimate = doc["budget"]["estimate_usd"]
    assert estimate == doc["cost"]["uncached_usd"] < doc["cost"]["total_usd"]  # the cache is left out of both
    assert main(["plan", str(manifest), "--out", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"${doc['cost']['total_usd']:.2f} for every job; ${estimate:.2f} for the 0 job(s) not cached" in text
    assert f"estimate for what is not cached: ${estimate:.2f}" in text
    # the run's report and summary carry the same figure for what was not cached when it started
    latest = json.loads((out / "runs" / "small-launch" / "latest.json").read_text())
    report = json.loads((out / "runs" / "small-launch" / latest["run_id"] / "report.json").read_text())
    assert report["cost"]["uncached_usd"] == report["budget"]["estimate_usd"]
    # a budget between the cached estimate and the full one: the cache makes the difference, and plan says so
    total = doc["cost"]["total_usd"]
    budgeted = write(tmp_path / "b", extra=f"budget:\n  max_usd: {round((estimate + total) / 2, 4)}\n")
    shutil.copytree(out, tmp_path / "out")
    assert main(["plan", str(budgeted), "--out", str(tmp_path / "out")]) == EXIT_OK
    assert main(["plan", str(budgeted), "--out", str(tmp_path / "empty")]) == EXIT_INVALID
    assert "is over the budget" in capsys.readouterr().err


# --- the user's setup: exit 4, one line, what to do -------------------------------------------------------------


def test_missing_credentials_is_a_setup_error(no_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-machine-arn", ARN]) == EXIT_SETUP
    line = one_line(capsys.readouterr().err)
    assert line.startswith("campaign: no usable AWS credentials") and "aws configure" in line
    manifest = write(tmp_path / "c")
    assert main(["submit", str(manifest), "--bucket", "b"]) == EXIT_SETUP
    assert "no usable AWS credentials" in one_line(capsys.readouterr().err)


def test_aws_region_is_honoured_and_a_missing_one_is_named(no_aws: None, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["approve", "small-launch", "--bucket", "b"]) == EXIT_SETUP
    line = one_line(capsys.readouterr().err)
    assert line.startswith("campaign: no AWS region configured") and "AWS_REGION" in line
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # the README's variable: now the region is found ...
    assert main(["approve", "small-launch", "--bucket", "b"]) == EXIT_SETUP
    line = one_line(capsys.readouterr().err)
    assert "region" not in line and line.startswith("campaign: no usable AWS credentials")  # ... and credentials are next
    assert "AWS_DEFAULT_REGION" not in os.environ  # the command left the environment as it found it


def test_models_pull_names_the_models_and_the_missing_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["models", "pull", "cogvideox-9b", "--to", str(tmp_path)])
    assert stop.value.code == EXIT_INVALID
    err = capsys.readouterr().err
    assert "invalid choice: 'cogvideox-9b'" in err and "cogvideox-5b" in err
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # a base install: the Hub client is not there
    assert main(["models", "pull", "cogvideox-5b", "--to", str(tmp_path)]) == EXIT_SETUP
    line = one_line(capsys.readouterr().err)
    assert "the 'gpu' extra" in line and "pip install -e '.[gpu]'" in line


def test_check_models_that_could_not_run_does_not_pass(no_aws: None, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path / "c")
    code = main(["plan", str(manifest), "--out", str(tmp_path / "out"), "--check-models", "--images", "bedrock"])
    err = capsys.readouterr().err
    assert code == EXIT_FAILED, err
    assert "warning: images[0].edits[0].upscale-fast: could not check" in err
    assert re.search(r"^models checked: none$", err, flags=re.M), err
    assert "could not check: stability.stable-fast-upscale-v1:0" in err or "could not check: " in err


def test_the_enhancer_region_error_names_aws_region(no_aws: None, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the default us. Claude profile cannot be called from here
    assert main(["enhance", "A bee.", "--enhancer", "bedrock"]) == EXIT_INVALID
    line = one_line(capsys.readouterr().err)
    assert "AWS_REGION chooses the region" in line and "CAMPAIGN_STABILITY_REGION" not in line


# --- usage and configuration errors of `run`: exit 2 -----------------------------------------------------------


@pytest.mark.parametrize("flags, words", [
    (["--video", "foo"], "unknown video backend 'foo'"),
    (["--video", "sagemaker"], "--video sagemaker needs --sagemaker-option"),
    (["--video", "bedrock"], "--video bedrock"),
    (["--out", "FILE"], "this is a file, not a folder"),
])
def test_run_usage_and_configuration_errors_exit_2(flags: list[str], words: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path / "c")
    (tmp_path / "FILE").write_text("x")
    argv = ["run", str(manifest), "--quiet", *[str(tmp_path / f) if f == "FILE" else f for f in flags]]
    if "--out" not in flags:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == EXIT_INVALID
    assert words in one_line(capsys.readouterr().err)


# --- CDK context errors ------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="the CDK app runs on jsii, which needs Node.js")
def test_a_cdk_context_error_is_one_plain_line(tmp_path: Path) -> None:
    (tmp_path / "layer" / "python").mkdir(parents=True)  # an (empty) layer: synth gets as far as the studio's settings
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps({"studio": "true", "layer_dir": str(tmp_path / "layer")}),
               CDK_OUTDIR=str(tmp_path / "cdk.out"))
    done = subprocess.run([sys.executable, str(ROOT / "cdk_app.py")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("cdk_app.py: error: context studio=true needs allowed_ips")


# --- a held run, edited and run again ------------------------------------------------------------------------------


def test_a_held_run_is_superseded_by_the_next_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    manifest = write(tmp_path / "c", extra="approval: before-render\n")
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_AWAITING_APPROVAL
    runs = out / "runs" / "small-launch"
    first = json.loads((runs / "latest.json").read_text())["run_id"]
    write(tmp_path / "c", extra="approval: before-render\n", prompt="A bee on a red flower.")  # edited after review
    capsys.readouterr()
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == EXIT_AWAITING_APPROVAL
    assert f"run {first} (held for approval) is superseded by this run" in capsys.readouterr().err
    record: dict[str, Any] = json.loads((runs / first / "approval.json").read_text())
    report: dict[str, Any] = json.loads((runs / first / "report.json").read_text())
    assert record["status"] == report["status"] == "superseded"
    assert report["errors"][0]["error"] == "Superseded"
    second = json.loads((runs / "latest.json").read_text())["run_id"]
    assert second != first and json.loads((runs / second / "approval.json").read_text())["status"] == "awaiting"
    assert main(["approve", "small-launch", "--run", first, "--out", str(out)]) == EXIT_FAILED
    assert "is not awaiting approval (it is superseded)" in capsys.readouterr().err


# --- third-party noise ---------------------------------------------------------------------------------------------


def warn_from_torch(*, verbose: bool) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with third_party_quiet(verbose):
            warnings.warn_explicit("deprecated", DeprecationWarning, "torch/utils.py", 1, module="torch.utils")
    return [str(w.message) for w in seen]


def test_third_party_warnings_are_hidden_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert warn_from_torch(verbose=False) == []
    assert warn_from_torch(verbose=True) == ["deprecated"]
    assert main(["--verbose", "enhance", "x"]) == main(["enhance", "x", "--verbose"]) == EXIT_OK  # either place
