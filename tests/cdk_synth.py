"""The CDK app synthesised offline, once per context per test process.

A synth of the whole stack (cdk-nag's AwsSolutions checks included) costs about 6 s, most of it in the jsii Node
process. Several template modules check the same context (the default one above all); under xdist each worker
is one process, so a module that lands on a worker after another with the same context reuses its synth. The
synthesised stack, its Template and its cloud assembly are only read by the tests."""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # cdk_app.py and infra/ live at the repository root, outside the package
    sys.path.insert(0, str(ROOT))

STACK = "CampaignPipeline"


@dataclass(frozen=True)
class Synth:
    stack: Any  # aws_cdk.Stack
    template: Any  # aws_cdk.assertions.Template
    assembly: Path  # the cloud assembly folder (cdk.out)


_SYNTHS: dict[str, Synth] = {}
_LOCK = threading.Lock()


def synth(**context: Any) -> Synth:
    """The stack synthesised with cdk.json's context plus `context` (and a stub Lambda layer: the real one,
    infra/build_layer.py, matters at deploy time, not for the template). A context the app refuses raises its
    ValueError every time; only a successful synth is kept."""
    from aws_cdk import Stack
    from aws_cdk.assertions import Template

    from cdk_app import _cdk_json_context, build_app
    from infra.build_layer import build

    key = json.dumps(context, sort_keys=True, default=str)
    with _LOCK:
        if key in _SYNTHS:
            return _SYNTHS[key]
        tmp = Path(tempfile.mkdtemp(prefix="cdk-synth-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # kept while the process may read it, then removed
        layer = build(tmp / "layer", stub=True)
        app = build_app({**_cdk_json_context(), "layer_dir": str(layer), **context}, outdir=str(tmp / "cdk.out"))
        assembly = app.synth()  # runs the AwsSolutions checks: an unacknowledged finding raises here
        stack = cast(Stack, app.node.find_child(STACK))
        _SYNTHS[key] = found = Synth(stack, Template.from_stack(stack), Path(assembly.directory))
        return found
