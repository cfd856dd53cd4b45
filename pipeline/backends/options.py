"""Which backends a run uses, from `campaign run`'s backend flags: the one flag group and the one builder that the
CLI and the studio share, so both choose alike and neither imports the other."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.backends import (
    AWS_VIDEO,
    ENHANCERS,
    IMAGE_BACKENDS,
    TRANSLATORS,
    VIDEO_BACKENDS,
    VOICE_BACKENDS,
    Backends,
    select_backends,
)


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backends (local defaults: passthrough enhancer, local images, preview video)")
    g.add_argument("--backend", choices=["local", "aws"], default="local",
                   help="aws = --enhancer bedrock --images bedrock --video sagemaker+bedrock --voice polly "
                        "--translator bedrock")
    g.add_argument("--enhancer", choices=ENHANCERS, help="prompt enhancement backend")
    g.add_argument("--enhancer-model", help="Bedrock model or inference profile id for --enhancer bedrock")
    g.add_argument("--images", choices=IMAGE_BACKENDS, help="image edit backend")
    g.add_argument("--video", metavar="BACKEND[+BACKEND]",
                   help=f"video clip backend(s): {', '.join(VIDEO_BACKENDS)}; join with '+' to mix models "
                        "(sagemaker+bedrock: CogVideoX on SageMaker, Luma Ray2 on Bedrock)")
    g.add_argument("--voice", choices=VOICE_BACKENDS,
                   help="voiceover backend: local (espeak-ng, a placeholder voice) or polly (Amazon Polly)")
    g.add_argument("--translator", choices=TRANSLATORS,
                   help="translation of captions and voiceover for videos with translate: true: passthrough (the "
                        "text kept as written, marked untranslated) or bedrock (Claude, the --enhancer-model)")
    g.add_argument("--bedrock-output", metavar="S3URI",
                   help="where Bedrock writes Luma Ray2 clips, for --video bedrock (or CAMPAIGN_BEDROCK_OUTPUT_S3_URI)")
    g.add_argument("--models", type=Path, help="folder of diffusers pipelines, for --video diffusers")
    g.add_argument("--sagemaker-option", action="append", default=[], metavar="KEY=VALUE",
                   help="settings for --video sagemaker (role_arn, image_uri, bucket, models_s3_uri, instance_type, ...)")


def parse_backend_flags(argv: Sequence[str]) -> argparse.Namespace:
    """The backend flags alone (as `backend_flags` wrote them), parsed by the same group `campaign run` uses."""
    parser = argparse.ArgumentParser(prog="campaign run", add_help=False)
    add_backend_flags(parser)
    return parser.parse_args(list(argv))


def backend_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The backend flags as given on the command line (folders made absolute), to hand to another process."""
    argv: list[str] = []
    if getattr(args, "backend", "local") != "local":
        argv += ["--backend", args.backend]
    for flag, value in (("--enhancer", args.enhancer), ("--enhancer-model", args.enhancer_model),
                        ("--images", args.images), ("--video", args.video), ("--voice", getattr(args, "voice", None)),
                        ("--translator", getattr(args, "translator", None)),
                        ("--bedrock-output", getattr(args, "bedrock_output", None)), ("--models", args.models)):
        if value is not None:
            argv += [flag, str(Path(value).resolve()) if flag == "--models" else str(value)]
    for option in args.sagemaker_option:
        argv += ["--sagemaker-option", option]
    return tuple(argv)


def backends_from_args(args: argparse.Namespace, *, enhancer_model: str | None = None) -> Backends:
    """The backends these flags choose; `enhancer_model` (the manifest's) applies when no flag names one."""
    aws = getattr(args, "backend", "local") == "aws"
    options = dict(kv.split("=", 1) for kv in getattr(args, "sagemaker_option", []) if "=" in kv)
    if getattr(args, "bedrock_output", None):
        options["bedrock_output_s3_uri"] = args.bedrock_output
    return select_backends(
        enhancer=args.enhancer or ("bedrock" if aws else "passthrough"),
        images=args.images or ("bedrock" if aws else "local"),
        video=args.video or (AWS_VIDEO if aws else "preview"),
        enhancer_model=args.enhancer_model or enhancer_model,
        models_dir=args.models, options=options,
        voice=getattr(args, "voice", None) or ("polly" if aws else "local"),
        translator=getattr(args, "translator", None) or ("bedrock" if aws else "passthrough"),
    )
