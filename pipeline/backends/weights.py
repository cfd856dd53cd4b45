"""Weights, once: download a video model's repos from the Hugging Face Hub and store them where clip jobs read them.

The result is the layout container/generate.py expects under its models folder: `<dest>/<model>` (T2V, or both
modes for Wan2.2 TI2V) and `<dest>/<model>-i2v` (CogVideoX's separate I2V weights), each a diffusers pipeline folder. Processing jobs
mount that prefix as a ProcessingInput and never download from the hub.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.catalog import VIDEO_MODELS

# Written last: generate.py refuses a folder without it, so an interrupted upload is never mistaken
# for a complete pipeline folder.
COMPLETION_MARKER = "model_index.json"


def model_repos(model_name: str) -> dict[str, str]:
    """`{folder: hub repo}` for a registry model: `<model>` and, when its I2V weights are separate, `<model>-i2v`."""
    if model_name not in VIDEO_MODELS:
        raise ValueError(f"unknown video model {model_name!r}; known: {sorted(VIDEO_MODELS)}")
    return VIDEO_MODELS[model_name].folders()


def pull_model(
    model_name: str,
    dest: str | Path,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    s3_client: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Download `model_name`'s T2V and I2V repos once and store them under `dest`; returns `{folder: location}`.

    Needs internet (the Hub) and, for an `s3://bucket/prefix` destination, AWS credentials (standard boto3
    configuration; `s3_client` replaces the default client). A local `dest` gets plain copies (symlinks of
    the Hub cache resolved). `snapshot_download` keeps its cache (`cache_dir`, else the Hub default), so a
    second pull of the same revision downloads nothing. `revision` pins a branch, tag or commit for every repo.
    """
    from huggingface_hub import snapshot_download  # only this function needs the Hub client

    sources: dict[str, Path] = {}
    for folder, repo in model_repos(model_name).items():
        log(f"downloading {repo} ({revision or 'main'})")
        sources[folder] = Path(snapshot_download(repo_id=repo, revision=revision, cache_dir=cache_dir))
    return store_model_folders(sources, dest, s3_client=s3_client, log=log)


def store_model_folders(
    sources: Mapping[str, Path],
    dest: str | Path,
    *,
    s3_client: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Copy each `{folder: local pipeline folder}` to `dest/<folder>` (local path or s3:// prefix)."""
    for folder, source in sources.items():
        if not (source / COMPLETION_MARKER).is_file():
            raise FileNotFoundError(f"{source} is not a diffusers pipeline folder (no {COMPLETION_MARKER}) for {folder!r}")
    stored: dict[str, str] = {}
    dest_text = str(dest)
    if dest_text.startswith("s3://"):
        bucket, _, prefix = dest_text.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"destination {dest_text!r} names no bucket")
        prefix = prefix.strip("/")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        for folder, source in sources.items():
            root = f"{prefix}/{folder}" if prefix else folder
            for path in _files_marker_last(source):
                key = f"{root}/{path.relative_to(source).as_posix()}"
                s3_client.upload_file(str(path), bucket, key)  # follows the Hub cache's symlinks
            stored[folder] = f"s3://{bucket}/{root}/"
            log(f"uploaded {folder} to {stored[folder]}")
        return stored
    for folder, source in sources.items():
        target = Path(dest_text) / folder
        partial = target.with_name(f".{folder}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, symlinks=False, ignore=shutil.ignore_patterns(".*"))
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        stored[folder] = str(target)
        log(f"copied {folder} to {target}")
    return stored


def _files_marker_last(source: Path) -> list[Path]:
    files = [p for p in source.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)]
    return sorted(files, key=lambda p: (p.relative_to(source).as_posix() == COMPLETION_MARKER, p.relative_to(source).as_posix()))
