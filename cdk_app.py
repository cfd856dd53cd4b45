"""The CDK app: `npx cdk synth` (cdk.json) or `python cdk_app.py` writes cdk.out/ offline, no credentials.

The stack names no account or region (deploy-time values) and does no lookups. Settings come from CDK
context (cdk.json, or `-c key=value`); see infra/settings.py and the README (Deploying on AWS with CDK).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# jsii warns at import on a Node.js past its end of life; the README and .nvmrc ask for Node 22 or later, and
# this keeps a Node 20 from burying synth's own messages (set the variable yourself to see it).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # infra/ and pipeline/ when run from elsewhere

from infra.settings import StackSettings  # noqa: E402
from infra.stack import CampaignStack  # noqa: E402

DEFAULT_STACK_NAME = "CampaignPipeline"


def build_app(context: dict[str, object] | None = None, *, outdir: str | None = None) -> cdk.App:
    """The app with its stack and the AwsSolutions checks (an unacknowledged finding fails synth)."""
    props: dict[str, object] = {}
    if context is not None:
        props["context"] = context
    if outdir is not None:
        props["outdir"] = outdir
    app = cdk.App(**props)  # type: ignore[arg-type]
    settings = StackSettings.from_context(app.node)
    name = str(app.node.try_get_context("stack_name") or DEFAULT_STACK_NAME)
    CampaignStack(app, name, settings=settings, description="Campaign pipeline: manifests in S3 -> Step Functions -> "
                  "Bedrock images and prompts, SageMaker CogVideoX clips, assembled videos and a report")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def _cdk_json_context() -> dict[str, object]:
    """Run directly (not by the cdk CLI), the app reads cdk.json's context itself."""
    return dict(json.loads((ROOT / "cdk.json").read_text()).get("context", {}))


def main() -> int:
    """Synthesize; a context setting the stack refuses (infra/settings.py, infra/studio.py raise ValueError with
    the key's name) or a Lambda layer not built yet (infra/functions.py says how) is one plain line on stderr and
    exit 1, not a traceback. Anything else is a bug and keeps its traceback."""
    by_cli = "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ
    try:
        build_app(None if by_cli else _cdk_json_context(), outdir=None if by_cli else str(ROOT / "cdk.out")).synth()
    except (ValueError, FileNotFoundError) as exc:  # a bad context value; the layer not built yet
        print(f"cdk_app.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
