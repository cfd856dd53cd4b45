"""What the studio's server process needs from `campaign studio`: the output folder, the workspace, the backend
flags and who may administer it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV_VAR = "CAMPAIGN_STUDIO_CONFIG"
STUDIO_DIR = "studio"  # under the output folder: the studio's shot manifests, uploads, job status files
DEFAULT_CAMPAIGN = "studio"


@dataclass(frozen=True)
class StudioConfig:
    """`backend_argv` are `campaign run`'s backend flags exactly as given (--enhancer smollm, ...): the
    background worker hands them to the same parser, so every default stays in pipeline/cli.py."""

    out_dir: Path
    backend_argv: tuple[str, ...] = ()
    input_bucket: str | None = None
    output_bucket: str | None = None  # the stack's output bucket: its runs are listed under Runs too
    state_machine_arn: str | None = None
    workers: int = 2
    workspace: Path = field(default_factory=Path.cwd)  # manifests are loaded from and saved into this folder only
    admins: tuple[str, ...] = ()  # users who may cancel anyone's render (the local user is one, see server.py)

    @property
    def studio_dir(self) -> Path:
        return self.out_dir / STUDIO_DIR

    def to_env(self) -> str:
        return json.dumps({**asdict(self), "out_dir": str(self.out_dir), "backend_argv": list(self.backend_argv),
                           "workspace": str(self.workspace), "admins": list(self.admins)})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StudioConfig:
        """The config `campaign studio` put in the environment; without one, ./out with the local backends."""
        raw = (environ if environ is not None else dict(os.environ)).get(ENV_VAR)
        if not raw:
            return cls(out_dir=Path("out").resolve())
        d = json.loads(raw)
        return cls(**{**d, "out_dir": Path(d["out_dir"]), "backend_argv": tuple(d.get("backend_argv") or ()),
                      "workspace": Path(d["workspace"]) if d.get("workspace") else Path.cwd(),
                      "admins": tuple(d.get("admins") or ())})

    def flag(self, name: str) -> str | None:
        """The value of one backend flag (`--video`), or None when it was not given."""
        argv = list(self.backend_argv)
        for i, arg in enumerate(argv):
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None
