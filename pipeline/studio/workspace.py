"""The studio's workspace: the one folder whose *.yaml manifests the Manifest page may load and save."""

from __future__ import annotations

import os
from pathlib import Path

MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few KB; a bigger file is not one
SUFFIX = ".yaml"


class WorkspaceError(ValueError):
    """A name that is not a manifest in the workspace, or a file that cannot be read as one (one line)."""


def _shown(name: str) -> str:
    return repr(name[:200] + ("…" if len(name) > 200 else ""))


def manifest_path(workspace: Path, name: str) -> Path:
    """The file `name` means: a *.yaml file in the workspace (relative to it, or an absolute path inside it) whose
    folder exists. Symbolic links are followed first, so none leads out."""
    name = name.strip()
    if not name or "\x00" in name:
        raise WorkspaceError("Manifest file: give a name ending in .yaml, e.g. campaign.yaml")
    root = workspace.resolve()
    target = (root / name).resolve()  # an absolute `name` replaces root here, and is then checked like any other
    if not target.is_relative_to(root) or target == root:
        raise WorkspaceError(f"Manifest file: {_shown(name)} is outside the workspace {root} "
                             "(the studio reads and writes only *.yaml files in it; start it with --workspace DIR)")
    if not name.endswith(SUFFIX) or target.suffix != SUFFIX:
        raise WorkspaceError(f"Manifest file: {_shown(name)} is not a .yaml file (the studio reads and writes only "
                             "*.yaml files in the workspace)")
    if not target.parent.is_dir():
        raise WorkspaceError(f"Manifest file: the folder {target.parent.relative_to(root).as_posix()!r} does not exist "
                             "in the workspace")
    return target


def shown_name(workspace: Path, path: Path) -> str:
    """How the page names a workspace file: relative to the workspace."""
    try:
        return path.relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path.name


def read_manifest(workspace: Path, name: str) -> tuple[Path, str]:
    """(path, text) of a manifest in the workspace; a clear one-line WorkspaceError for anything else."""
    path = manifest_path(workspace, name)
    label = shown_name(workspace, path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise WorkspaceError(f"Manifest file: {label} does not exist in the workspace") from None
    except IsADirectoryError:
        raise WorkspaceError(f"Manifest file: {label} is a folder") from None
    except OSError as exc:
        raise WorkspaceError(f"Manifest file: {label} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise WorkspaceError(f"Manifest file: {label} is larger than {MAX_MANIFEST_BYTES // 1024} KB: not a manifest")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(f"Manifest file: {label} is not UTF-8 text (byte {exc.start}): a binary file?") from None
    if "\x00" in text:
        raise WorkspaceError(f"Manifest file: {label} contains NUL bytes: a binary file?")
    return path, text


def write_manifest(workspace: Path, name: str, text: str) -> Path:
    """Write `text` to a manifest in the workspace, atomically (a temporary file beside it, then a rename)."""
    path = manifest_path(workspace, name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # replaces a link itself, never what it points to
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkspaceError(f"Manifest file: {shown_name(workspace, path)} cannot be written "
                             f"({exc.strerror or type(exc).__name__})") from None
    return path
