"""The code's shape: one package per stage, imports run one way (the CLI above the studio, the studio above the
cloud runner, ... the manifest above nothing but errors and the catalog) and no module under pipeline/ grows past ~600 lines
without saying why in its opening docstring."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipeline"

# Layers, lowest first, in the order of the flow (manifest -> plan -> run -> media -> report). A module may
# import its own layer and the ones below, never one above. docs/architecture.md draws the same picture.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("pipeline.errors", "pipeline.catalog"),  # what every stage names: error types, models and tools
    ("pipeline.manifest",),  # YAML -> Campaign, and the contract's rules on sizes, frames and fonts
    ("pipeline.plan",),  # Campaign -> Plan: jobs, keys, schedule, cost
    ("pipeline.storage",),  # the cache and the output folder, local or S3
    ("pipeline.review",),  # review decisions beside the runs, each asset's history, the export of approved files
    ("pipeline.media",),  # moviepy/ffmpeg: probe, encode, compose, assemble, formats
    ("pipeline.backends",),  # the services and models that make images, clips and prompts
    ("pipeline.tasks",),  # one task function per job kind, shared by both runners
    ("pipeline.credentials",),  # Content Credentials (C2PA): signed as report publishes each file, read back
    ("pipeline.report",),  # report.json, report.html, the run summary
    ("pipeline.run",),  # the local runner, budget and approval
    ("pipeline.cloud",),  # the Step Functions runner's steps
    ("pipeline.studio",),  # the Streamlit studio
    ("pipeline.cli",),  # the `campaign` command, above everything it starts
)
# The top level holds only these modules; everything else lives in the package of its stage.
TOP_LEVEL = {"__init__.py", "cli.py", "errors.py", "catalog.py"}
MAX_LINES = 600


def layer_of(module: str) -> int | None:
    if module == "pipeline":  # pipeline/__init__.py: the version only
        return 0
    best: tuple[int, int] | None = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (rank, len(name))
    return best[0] if best else None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Every `import` / `from ... import` executed at run time (at module level or inside functions), with its
    line; imports under `if TYPE_CHECKING:` are for the type checker only and are left out."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def pipeline_modules() -> list[Path]:
    return sorted(p for p in PIPELINE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_pipeline_module_has_a_layer() -> None:
    missing = [module_name(p) for p in pipeline_modules() if layer_of(module_name(p)) is None]
    assert not missing, f"add these modules to LAYERS: {missing}"


def test_the_top_level_holds_only_the_entry_points() -> None:
    extra = sorted(p.name for p in PIPELINE.glob("*.py") if p.name not in TOP_LEVEL)
    assert not extra, f"move these into the package of their stage: {extra}"


def test_imports_never_point_upward() -> None:
    upward = []
    for path in pipeline_modules():
        importer = module_name(path)
        rank = layer_of(importer)
        assert rank is not None
        for imported, line in runtime_imports(ast.parse(path.read_text())):
            target = layer_of(imported) if imported.startswith("pipeline") else None
            if target is not None and target > rank:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {importer} (layer {rank}) imports {imported} (layer {target})")
    assert not upward, "\n".join(upward)


def test_no_module_grows_past_the_limit_without_a_reason() -> None:
    too_long = []
    for path in pipeline_modules():
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "lines" not in doc:  # the reason names its length: "... is N lines because ..."
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, too_long


def test_the_lambda_handlers_import_only_their_step() -> None:
    """Each handler in tasks/ imports the one cloud step module it calls (plus the events and the shared
    runtime), so a light function never loads another step's dependencies."""
    for path in sorted((ROOT / "tasks").glob("*.py")):
        if path.name in ("__init__.py", "_runtime.py"):
            continue
        imported = {m for m, _ in runtime_imports(ast.parse(path.read_text())) if m.startswith("pipeline.cloud.")}
        steps = {m.rsplit(".", 1)[0] if m.count(".") > 2 else m for m in imported} - {"pipeline.cloud.events"}
        assert len(steps) == 1, f"{path.name} imports {sorted(steps)}"
