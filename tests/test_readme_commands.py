"""The README against the program: the CLI table names every option `--help` shows (and no other), and each fenced
command of the Quickstart runs as written, on one demo run made the way `make demo` makes it."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import EXIT_OK, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHARED = {"-h", "--help", "--verbose"}  # every command has them; the README says so once, under the table


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Each leaf command (`models pull`, not `models`) with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, prefix + (name,))
            return
    yield prefix, parser


def cli_rows() -> dict[tuple[str, ...], str]:
    """`campaign X Y ...` -> the first cell of its row in the README's CLI table."""
    rows: dict[tuple[str, ...], str] = {}
    for line in section("The CLI").splitlines():
        m = re.match(r"\| `campaign ([^`]*)`", line)
        if m:
            words = tuple(w for w in m.group(1).split() if re.fullmatch(r"[a-z]+", w))
            rows[words] = m.group(1)
    return rows


def documented(words: tuple[str, ...], rows: dict[tuple[str, ...], str]) -> str:
    for key, cell in rows.items():
        if key[:len(words)] == words:
            return cell
    raise AssertionError(f"no row for `campaign {' '.join(words)}` in the README's CLI table")


def test_the_cli_table_and_help_name_the_same_options() -> None:
    rows = cli_rows()
    backend_table = section("The CLI").split("Backend flags for", 1)[1]
    for words, parser in commands(build_parser()):
        cell = documented(words, rows)
        shown = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - SHARED
        in_row = set(re.findall(r"--[a-z][a-z-]*", cell))
        backend_flags = "[backend flags]" in cell
        missing = {o for o in shown - in_row if not (backend_flags and f"`{o}" in backend_table)}
        assert not missing, f"campaign {' '.join(words)}: --help shows {sorted(missing)}, the README's row does not"
        unknown = in_row - shown
        assert not unknown, f"campaign {' '.join(words)}: the README names {sorted(unknown)}, which --help does not have"
    sagemaker_row = next(line for line in backend_table.splitlines() if line.startswith("| `--sagemaker-option"))
    from pipeline.backends.video_sagemaker import SageMakerVideoBackend

    try:  # the backend's own list of keys, as its refusal of an unknown key states it
        SageMakerVideoBackend.from_options({"no_such_key": "x"})
    except Exception as exc:  # noqa: BLE001
        keys = re.findall(r"'([a-z_0-9]+)'", str(exc).split("known:", 1)[1])
    assert keys and all(f"`{k}`" in sagemaker_row for k in keys), keys


# --- the Quickstart, run ---------------------------------------------------------------------------------------


def quickstart_lines() -> list[str]:
    text = section("Quickstart")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target (tab-indented lines after `target:`)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make demo`'s own `campaign run` line, once for the module, into a temporary folder instead of ./out."""
    out = tmp_path_factory.mktemp("demo") / "out"
    [line] = [c for c in make_recipe("demo") if "campaign run" in c]
    argv = shlex.split(line.replace("$(VENV)/bin/", ""))[1:]
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, "--quiet"]) == EXIT_OK
    return out


def test_every_quickstart_command_runs(demo_out: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lines = quickstart_lines()
    assert "make demo" in lines and any(line.startswith("campaign ") for line in lines)
    monkeypatch.chdir(ROOT)  # the commands name manifests/ relative to the checkout
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "make":  # `make demo` is the fixture's run; `make test` is this suite itself
            assert make_recipe(argv[1]), f"no Makefile target {argv[1]!r}"
            continue
        assert argv[0] == "campaign", line
        args = argv[1:]
        if "validate" not in args:  # ./out, as written, is the demo's folder: here a temporary one
            args += ["--out", str(demo_out)]
        assert main(args) == EXIT_OK, line
        captured = capsys.readouterr()
        assert "internal error" not in captured.err, (line, captured.err)
        if args[0] == "plan":
            assert "14 job(s), 14 already in" in captured.out, captured.out
        if args[0] == "run":
            assert "jobs: 14 (0 executed, 14 cached" in captured.out, captured.out


def test_the_readme_counts_the_stacks_lambda_functions() -> None:
    """`| N Lambda functions |` in *What gets deployed* against the TaskSpec entries of infra/functions.py (read
    with ast: no synth needed for a count)."""
    import ast

    tree = ast.parse((ROOT / "infra" / "functions.py").read_text())
    specs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "TaskSpec"]
    [count] = re.findall(r"^\| (\d+) Lambda functions \|", README, flags=re.M)
    assert int(count) == len(specs), (count, len(specs))
