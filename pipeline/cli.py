"""`campaign`: validate, plan, run, enhance, submit, status, models, studio — thin over the pipeline functions.

It is past 600 lines because it holds one parser and one short function per subcommand, and the one mapping
from errors to exit codes; each function only parses, calls one pipeline function and prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.backends import environment
from pipeline.backends.options import add_backend_flags, backend_flags, backends_from_args
from pipeline.errors import (
    BackendUnavailable,
    ManifestInvalid,
    OutputFolderRefused,
    PipelineError,
    ReviewRefused,
    os_problem,
    setup_problem,
)
from pipeline.run.signals import forgiving_output, stop_signals

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_INVALID = 2  # an invalid manifest, or a usage/configuration error (flags, options, --out refused), as argparse's own
EXIT_SETUP = 4  # this machine's setup: no AWS credentials or region, an optional extra not installed
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as a shell reports them
STDIN = "-"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of workers (at least 1)")
    return value


def _allow_outside_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-outside", action="append", type=Path, default=[], metavar="PATH",
                   help="a folder outside the manifest's folder that assets may resolve into (symbolic links are "
                        "followed); repeatable")
def _signing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sign-cert", type=Path, default=None, metavar="PEM",
                   help="certificate chain (leaf first) that signs the Content Credentials (or CAMPAIGN_SIGN_CERT); "
                        "without it a development certificate, not trusted for publication, is used")
    p.add_argument("--sign-key", type=Path, default=None, metavar="PEM",
                   help="the certificate's EC P-256 private key (or CAMPAIGN_SIGN_KEY)")
EXIT_AWAITING_APPROVAL = 3  # `campaign run` stopped at the approval gate: review, then `campaign approve`


def _video_models() -> list[str]:
    from pipeline.catalog import VIDEO_MODELS

    return list(VIDEO_MODELS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="campaign", description="Batch content production from a YAML campaign manifest.")
    p.add_argument("--version", action="version", version=f"campaign {__version__}")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check manifests; every problem as FILE:LINE:COL: error: PATH: MESSAGE")
    v.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST", help="a file, or - for standard input")
    _allow_outside_flag(v)

    pl = sub.add_parser("plan", help="show the jobs per stage, what is cached, and the estimated cloud cost")
    pl.add_argument("manifest", type=Path, metavar="MANIFEST")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.add_argument("--out", type=Path, default=Path("out"), help="output folder whose cache is checked (default ./out)")
    pl.add_argument("--instance-type", default=None, help="SageMaker instance type for the cost estimate")
    pl.add_argument("--check-models", action="store_true",
                    help="ask Bedrock (GetFoundationModel) for each model the campaign calls: Legacy or retired "
                         "models and missing access are reported before anything runs")
    _allow_outside_flag(pl)
    add_backend_flags(pl)

    r = sub.add_parser("run", help="run a campaign on this machine")
    r.add_argument("manifest", type=Path, metavar="MANIFEST")
    r.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    r.add_argument("--workers", type=_positive_int, default=max(2, os.cpu_count() or 2), help="jobs run in parallel")
    r.add_argument("--force", action="store_true",
                   help="write into a non-empty --out folder that `campaign run` did not make (nothing in it is removed)")
    r.add_argument("--verify", action="store_true",
                   help="hash every cached output before reusing it (small ones always are; large ones get a size check)")
    _allow_outside_flag(r)
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    gate = r.add_mutually_exclusive_group()
    gate.add_argument("--approval", action="store_true",
                      help="stop after prompt enhancement and image edits, before any clip (as `approval: before-render`)")
    gate.add_argument("--approve", action="store_true",
                      help="approved in advance: run through the gate (continues this manifest's held run, if any)")
    _signing_flags(r)
    add_backend_flags(r)

    for verb, what in (("approve", "render a run held at the approval gate (continues from the cache)"),
                       ("reject", "end a run held at the approval gate as `rejected`")):
        a = sub.add_parser(verb, help=what)
        a.add_argument("campaign", metavar="CAMPAIGN")
        a.add_argument("--run", help="the run id (default: the campaign's latest run)")
        a.add_argument("--out", type=Path, default=Path("out"), help="local output folder (default ./out)")
        a.add_argument("--bucket", help="the stack's output bucket: answer a cloud run instead of a local one")
        if verb == "approve":
            a.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2), help="jobs run in parallel")
            a.add_argument("--quiet", action="store_true", help="no progress output")
            _signing_flags(a)
        else:
            a.add_argument("--reason", default="", help="why, for the report")

    e = sub.add_parser("enhance", help="enhance one prompt and show it with its token count")
    e.add_argument("prompt")
    e.add_argument("--enhancer", default=None, choices=["passthrough", "smollm", "bedrock"],
                   help="passthrough (default), smollm or bedrock")
    e.add_argument("--enhancer-model", default=None)
    e.add_argument("--model", default=None, choices=sorted(_video_models()),
                   help="video model whose token limit applies (default: the default model)")

    s = sub.add_parser("submit", help="upload a manifest and its assets to the input bucket (starts the cloud run)")
    s.add_argument("manifest", type=Path, metavar="MANIFEST")
    s.add_argument("--bucket", default=os.environ.get("CAMPAIGN_INPUT_BUCKET"), help="input bucket (or CAMPAIGN_INPUT_BUCKET)")
    s.add_argument("--state-machine-arn", default=os.environ.get("CAMPAIGN_STATE_MACHINE_ARN"))
    s.add_argument("--team", default=os.environ.get("CAMPAIGN_TEAM"),
                   help="put the manifest under manifests/TEAM/ (or CAMPAIGN_TEAM; required where the stack says so)")
    s.add_argument("--replace", action="store_true",
                   help="replace the manifest of this name even if someone else submitted it (and its schedule)")
    _allow_outside_flag(s)

    c = sub.add_parser("cache", help="check the local cache: every output against the size and hash in its provenance")
    csub = c.add_subparsers(dest="cache_command", required=True)
    cv = csub.add_parser("verify", help="hash every cached output; move damaged entries to quarantine/ (exit 1 if any)")
    cv.add_argument("--out", type=Path, default=Path("out"), help="output folder whose cache is checked (default ./out)")

    st = sub.add_parser("status", help="recent cloud executions with status, failed items and console links")
    st.add_argument("campaign", nargs="?")
    st.add_argument("--state-machine-arn", default=os.environ.get("CAMPAIGN_STATE_MACHINE_ARN"),
                    help="(or CAMPAIGN_STATE_MACHINE_ARN)")
    st.add_argument("--limit", type=int, default=20)

    sd = sub.add_parser("studio", help="the studio web page: make and watch a clip, review runs, edit manifests")
    sd.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    sd.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    sd.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sd.add_argument("--workspace", type=Path, default=Path("."),
                    help="the folder whose *.yaml manifests the Manifest page loads and saves (default: this one)")
    sd.add_argument("--auth", choices=("token", "alb"), default="token",
                    help="token: a link with a random token, printed at start (default); alb: behind the deployed "
                         "load balancer's sign-in, which names the user")
    sd.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="another Host name the studio answers to (besides localhost and 127.0.0.1)")
    sd.add_argument("--admin", action="append", default=[x for x in os.environ.get("CAMPAIGN_STUDIO_ADMINS", "").split(",") if x],
                    metavar="USER", help="a user who may cancel anyone's render (or CAMPAIGN_STUDIO_ADMINS, comma-separated)")
    sd.add_argument("--workers", type=int, default=2, help="jobs each generation runs in parallel")
    sd.add_argument("--bucket", default=os.environ.get("CAMPAIGN_INPUT_BUCKET"),
                    help="input bucket for Submit (or CAMPAIGN_INPUT_BUCKET)")
    sd.add_argument("--output-bucket", default=os.environ.get("CAMPAIGN_OUTPUT_BUCKET"),
                    help="the stack's output bucket: list its runs under Runs too (or CAMPAIGN_OUTPUT_BUCKET)")
    sd.add_argument("--state-machine-arn", default=os.environ.get("CAMPAIGN_STATE_MACHINE_ARN"))
    add_backend_flags(sd)

    cr = sub.add_parser("credentials", help="read delivered files' Content Credentials (C2PA): what they say, intact or not")
    cr.add_argument("files", nargs="+", type=Path, metavar="FILE")

    m = sub.add_parser("models", help="the video model registry (sizes, frames, licences, prices); pull weights once")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list", help="every video model: backends, size, frame rule, fps, tokens, licence, weights, price")
    ml.add_argument("--json", action="store_true", help="print the registry as JSON")
    ml.add_argument("--instance-type", default=None, help="SageMaker instance type for the price per clip")
    mp = msub.add_parser("pull", help="download a self-hosted model's weights (T2V and I2V) once and store them")
    mp.add_argument("model", choices=_pullable_models(), help="one of: %(choices)s")
    mp.add_argument("--to", required=True, help="s3://bucket/prefix or a local folder")

    from pipeline.review.commands import add_parsers  # review and export; a regenerate takes run's flags

    for rv in add_parsers(sub):
        _allow_outside_flag(rv)
        _signing_flags(rv)
        add_backend_flags(rv)
        rv.add_argument("--state-machine-arn", default=os.environ.get("CAMPAIGN_STATE_MACHINE_ARN"),
                        help="the stack's state machine: a regenerate with --bucket starts its execution there")
    _add_verbose_everywhere(sub)
    return p


VERBOSE_HELP = "show third-party warnings and logs (torch, transformers, ...), hidden otherwise"


def _add_verbose_everywhere(sub: Any) -> None:
    """`--verbose` after the command too (`campaign enhance ... --verbose`), on every subcommand, nested or not."""
    for parser in sub.choices.values():
        if not any("--verbose" in a.option_strings for a in parser._actions):
            parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_verbose_everywhere(action)


def _pullable_models() -> list[str]:
    from pipeline.catalog import VIDEO_MODELS

    return sorted(name for name, model in VIDEO_MODELS.items() if model.repo)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stop_signals() as stop, forgiving_output(), environment.aws_region_honoured(), \
            environment.third_party_quiet(getattr(args, "verbose", False)):
        code = _dispatch(args, stop.terminated)
        if stop.signals:
            stop.finish(code)
        return code


def _dispatch(args: argparse.Namespace, terminated: list[bool]) -> int:
    try:
        return int(_COMMANDS[args.command](args))
    except ManifestInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        how = "stopped by SIGTERM" if terminated else "interrupted"
        print(f"campaign: {how}; finished outputs are kept, run again to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except Exception as exc:
        known = user_error(exc)
        if known is None:
            if os.environ.get("CAMPAIGN_DEBUG"):
                raise
            print(f"campaign: internal error: {type(exc).__name__}: {exc} (set CAMPAIGN_DEBUG=1 for a traceback)",
                  file=sys.stderr)
            return EXIT_FAILED
        code, message = known
        print(f"campaign: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever a library wrote
        return code


def user_error(exc: Exception) -> tuple[int, str] | None:
    """The one place an error becomes an exit code and one line: the user's setup (EXIT_SETUP), usage and
    configuration (EXIT_INVALID), a failure the pipeline expected (EXIT_FAILED); None leaves "internal error"
    for real bugs. Commands raise; they do not print their own errors."""
    setup = setup_problem(exc)
    if setup:
        return EXIT_SETUP, str(exc) if isinstance(exc, BackendUnavailable) and setup.kind == "extra" else setup.message
    if isinstance(exc, (BackendUnavailable, OutputFolderRefused)):  # a flag, an option or --out the user chose
        return EXIT_INVALID, str(exc)
    if isinstance(exc, PipelineError):
        return EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    if type(exc).__module__.startswith("huggingface_hub"):  # `models pull` reaches the Hub: offline, gated, unknown
        return EXIT_FAILED, f"the Hugging Face Hub: {exc} (models pull needs internet access to huggingface.co)"
    if isinstance(exc, OSError):  # the user's environment (read-only folder, full disk), said plainly
        return EXIT_FAILED, os_problem(exc)
    if type(exc).__module__.startswith("botocore"):  # AWS answered, or could not be reached: what it said
        return EXIT_FAILED, f"AWS: {exc}"
    return None


def _load_campaign(path: Path, args: argparse.Namespace) -> Any:
    """A manifest from a file, or from standard input for `-` (its asset paths then relative to the working
    directory)."""
    from pipeline.manifest.campaign import load_manifest, load_manifest_text

    allow = tuple(getattr(args, "allow_outside", ()) or ())
    if str(path) == STDIN:
        return load_manifest_text(sys.stdin.read(), file="<stdin>", base_dir=Path.cwd(), allow_outside=allow)
    return load_manifest(path, allow_outside=allow)


# --- commands -----------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.manifests:
        try:
            c = _load_campaign(path, args)
        except ManifestInvalid as exc:
            for problem in exc.problems:
                print(problem)
            status = EXIT_INVALID
            continue
        shots = sum(len(v.shots) for v in c.videos)
        print(f"{path}: ok ({len(c.images)} image(s), {len(c.videos)} video(s), {shots} shot(s))")
    return status


def _plan(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from pipeline.backends import check_video_models
    from pipeline.plan.build import KeySource, build_plan

    campaign = _load_campaign(args.manifest, args)
    backends = backends_from_args(args, enhancer_model=campaign.enhancer_model)
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity, video=backends.video.identity,
                     voice=backends.voice.identity(), translator=backends.translator.identity())
    check_video_models(backends.video, {s.model for v in campaign.videos for s in v.shots})
    plan = build_plan(campaign, keys, backends=backends.names(), s3_etags=_s3_etags(campaign),
                      overrides=_review_overrides(args, campaign))
    return campaign, backends, plan


def _review_overrides(args: argparse.Namespace, campaign: Any) -> Any:
    from pipeline.review.decisions import overrides_for  # regenerate requests kept beside the runs of --out

    return overrides_for(getattr(args, "out", None), campaign.name, str(args.manifest))


def _s3_etags(campaign: Any) -> dict[str, str]:
    """The current version of each s3:// asset: its outputs are keyed by it, so a changed object is re-made."""
    from pipeline.storage.store import current_etags

    return current_etags({a.id: a.uri for a in campaign.assets.values() if a.uri})


def cmd_plan(args: argparse.Namespace) -> int:
    from pipeline.manifest.variables import group_by_template
    from pipeline.plan.build import STAGE_NAMES
    from pipeline.run.budget import check_budget, estimate_uncached
    from pipeline.storage.store import LocalStore

    campaign, _, plan = _plan(args)
    problems = 0
    if args.check_models:
        from pipeline.backends.lifecycle import print_model_check

        problems = print_model_check(args.manifest, campaign, plan.backends,
                                     enhancer_model=args.enhancer_model or campaign.enhancer_model)
    # One estimate, with what is cached left out: the text, --json, the budget check and the run's summary all
    # read this one (estimate_uncached), never a second, cache-blind one.
    uncached = estimate_uncached(plan, LocalStore(args.out), instance_type=args.instance_type)
    if uncached.estimate is None and args.instance_type:  # the one input that can make it unpriceable
        raise BackendUnavailable(f"--instance-type {args.instance_type}: {uncached.error}")
    cost = dict(uncached.estimate or {})
    cached = dict(uncached.cached)
    budget = check_budget(campaign, uncached)
    groups = group_by_template((j.kind, j.image.image_id if j.kind == "image" else j.video.video_id,
                                j.image.variant if j.kind == "image" else j.video.variant)
                               for j in plan.jobs if j.kind in ("image", "video"))
    cloud = _cloud_sizing(plan)
    if args.json:
        print(json.dumps({"plan": plan.to_dict(), "cached": cached, "cost": cost, "budget": budget.to_json(),
                          "variants": [g.to_json() for g in groups], "cloud": cloud.to_json()}, indent=1))
        return _plan_verdict(budget, problems)
    print(f"campaign {plan.campaign}: {len(plan.jobs)} job(s), {sum(cached.values())} already in {args.out}/cache")
    distinct = len({j.key for j in plan.jobs})
    if distinct < len(plan.jobs):  # equal work (a shot every market shares) is made once and reused
        print(f"distinct outputs: {distinct} (the other {len(plan.jobs) - distinct} job(s) reuse one of them)")
    for g in groups:
        print(f"{g.kind} template {g.template}: {len(g.ids)} variant(s) over {' x '.join(g.variables)}")
    for item, change in plan.overrides.items():  # regenerate requests of `campaign review`, not in the manifest
        print(f"review override (* below): {item}: {', '.join(f'{k} {v!r}' for k, v in change.items())}")
    print(f"backends: {', '.join(f'{k}={v}' for k, v in plan.backends.items())}")
    for stage, jobs in plan.stages().items():
        print(f"\nstage {stage} — {STAGE_NAMES[stage]} ({len(jobs)})")
        for j in jobs:
            mark = "cached" if cached[j.id] else "to run"
            mark += " *" if j.id in plan.overrides else ""  # the item carries a review override
            deps = f"  after {', '.join(j.deps)}" if j.deps else ""
            print(f"  {mark:<7} {j.id:<28} {j.key[:12]}  {j.label}{deps}")
    if not cost:
        print(f"\nno cost estimate: {uncached.error}")
        return _plan_verdict(budget, problems)
    print(f"\nestimated cloud cost if run on AWS: ${cost['total_usd']:.2f} for every job; "
          f"${cost['uncached_usd']:.2f} for the {budget.jobs_to_run} job(s) not cached")
    for item in cost["items"]:
        print(f"  {item['what']:<44} x{item['count']:<4} ${item['usd']:.4f}  ({item['basis']})")
    print(f"  {cost['note']}")
    for unknown in cost.get("unknowns", []):
        print(f"  unverified: {unknown}")
    limit = budget.limit_usd
    print(f"budget: {f'${limit:,.2f}' if limit is not None else 'none'}; estimate for what is not cached: "
          f"${cost['uncached_usd']:.2f}")
    print("\n".join(cloud.lines()))
    return _plan_verdict(budget, problems)


def _cloud_sizing(plan: Any) -> Any:
    """The plan as the cloud would run it: worst-case history events of each execution, and the wall time the
    default quotas imply (pipeline/cloud/sizing.py)."""
    from pipeline.cloud.sizing import size_for_cloud

    return size_for_cloud(plan)


def _plan_verdict(budget: Any, model_errors: int) -> int:
    if budget.refused:
        print(budget.problem, file=sys.stderr)
        return EXIT_INVALID
    return EXIT_FAILED if model_errors else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.errors import ApprovalUnavailable
    from pipeline.run.approval import AWAITING, read_record
    from pipeline.storage.store import LocalStore

    campaign, backends, plan = _plan(args)
    run_id = None
    if args.approve:  # continue this manifest's run held at the gate, if its latest run is one
        try:
            record = read_record(LocalStore(args.out), campaign.name)
        except ApprovalUnavailable:
            record = None
        if record and record.status == AWAITING and record.manifest_sha256 == _sha256(args.manifest):
            _answer_local(args.out, record, approve=True, reason=None)
            run_id = record.run_id
    gate = not args.approve and (args.approval or campaign.approval is not None)
    return _run(args, campaign, backends, plan, run_id=run_id, gate=gate)


def _run(args: argparse.Namespace, campaign: Any, backends: Any, plan: Any, *, run_id: str | None, gate: bool) -> int:
    """Check the budget before any job, run (up to the gate when `gate`), print the run's summary."""
    from pipeline.report.summary import summarize
    from pipeline.report.write import AWAITING_APPROVAL
    from pipeline.run.approval import LocalHold, gate_applies, supersede_held
    from pipeline.run.budget import check_budget, estimate_uncached
    from pipeline.run.runner import run_local
    from pipeline.storage.store import LocalStore

    uncached = estimate_uncached(plan, LocalStore(args.out))
    budget = check_budget(campaign, uncached)
    if budget.refused:
        print(budget.problem, file=sys.stderr)
        return EXIT_INVALID
    if run_id is None and (Path(args.out) / "runs").is_dir():  # a new run replaces one still held at the gate
        held = supersede_held(LocalStore(args.out), campaign.name, by=_user())
        if held:
            print(f"campaign: run {held.run_id} (held for approval) is superseded by this run", file=sys.stderr)
    hold = None
    if gate and gate_applies(plan, uncached.cached):
        hold = LocalHold(manifest=str(Path(args.manifest).resolve()), manifest_sha256=_sha256(args.manifest),
                         backends={k: getattr(args, k) for k in _BACKEND_ARGS} | {"models": _str(args.models)}
                         | {"allow_outside": [str(p) for p in args.allow_outside]})
    signing = None
    if campaign.credentials.enabled:  # a certificate that cannot be used stops the run before any job
        from pipeline.credentials.keys import signing_key

        signing = signing_key(cert=getattr(args, "sign_cert", None), key=getattr(args, "sign_key", None))
    outcome = run_local(plan, backends, out_dir=args.out, workers=args.workers, show_progress=not args.quiet,
                        cost=dict(uncached.estimate or {}) or None, force=args.force, verify=args.verify, budget=budget.to_json(),
                        hold=hold, run_id=run_id, signing=signing)
    report = outcome.report
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        for fix in report.get("cache_repairs", []):
            print(f"  repaired {fix['entry']}: {fix['problem']}; the damaged files are in {args.out / fix['moved_to']}")
        base = Path(outcome.report_path).parent
        where = f"{report['campaign']} --run {report['run_id']} --out {args.out}"
        actions = [f"approve: campaign approve {where}", f"reject:  campaign reject {where}"] \
            if report["status"] == AWAITING_APPROVAL else []
        print(summarize(report, report_location=str(base / "report.html"), actions=actions).text, end="")
    if campaign.notify_webhook:  # the summary's last line says whether it was delivered; never fails the run
        from pipeline.report.webhook import notify_webhook

        notice = summarize(report, report_location=str(Path(outcome.report_path).parent / "report.html"))
        print(notify_webhook(campaign.notify_webhook, report, notice, store=LocalStore(args.out)).line(), end="",
              file=sys.stderr if args.json else sys.stdout)
    if report["status"] == AWAITING_APPROVAL:
        return EXIT_AWAITING_APPROVAL
    return EXIT_OK if report["status"] == "succeeded" else EXIT_FAILED


_BACKEND_ARGS = ("backend", "enhancer", "enhancer_model", "images", "video", "sagemaker_option")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a container): the answer is still recorded
        return "unknown"


def _answer_local(out: Path, record: Any, *, approve: bool, reason: str | None) -> Any:
    from pipeline.run.approval import APPROVED, REJECTED, write_record
    from pipeline.storage.store import LocalStore

    answered = record.answer(status=APPROVED if approve else REJECTED, by=_user(), reason=reason)
    write_record(LocalStore(out), answered)
    return answered


def cmd_approve(args: argparse.Namespace) -> int:
    from pipeline.errors import ApprovalUnavailable
    from pipeline.run.approval import read_record
    from pipeline.storage.store import LocalStore

    if args.bucket:
        return _answer_cloud(args, approve=True)
    record = read_record(LocalStore(args.out), args.campaign, args.run)
    if record.status == "awaiting" and record.manifest_sha256 != _sha256(Path(record.manifest)):
        raise ApprovalUnavailable(f"{record.manifest} changed since run {record.run_id} was held for review: run "
                                  "`campaign run` on it again to review the change (only what changed is re-made)")
    _answer_local(args.out, record, approve=True, reason=None)
    stored = dict(record.backends)
    ns = argparse.Namespace(manifest=Path(record.manifest), out=args.out, workers=args.workers, quiet=args.quiet,
                            json=False, **{k: stored.get(k) for k in _BACKEND_ARGS},
                            models=Path(stored["models"]) if stored.get("models") else None,
                            allow_outside=[Path(p) for p in stored.get("allow_outside") or []],
                            force=False, verify=False,  # the held run made the folder ours
                            sign_cert=args.sign_cert, sign_key=args.sign_key)
    ns.backend = ns.backend or "local"
    ns.sagemaker_option = ns.sagemaker_option or []
    campaign, backends, plan = _plan(ns)
    return _run(ns, campaign, backends, plan, run_id=record.run_id, gate=False)


def cmd_reject(args: argparse.Namespace) -> int:
    from pipeline.report.summary import summarize
    from pipeline.report.write import REJECTED, restate_report, run_prefix
    from pipeline.run.approval import approval_section, read_record
    from pipeline.storage.store import LocalStore

    if args.bucket:
        return _answer_cloud(args, approve=False)
    store = LocalStore(args.out)
    answered = _answer_local(args.out, read_record(store, args.campaign, args.run), approve=False,
                             reason=args.reason or None)
    prefix = run_prefix(answered.campaign, answered.run_id)
    why = f"rejected by {answered.answered_by}" + (f": {answered.reason}" if answered.reason else "")
    report = restate_report(store, prefix, status=REJECTED, error={"job": "approval", "error": "Rejected", "message": why},
                            approval=approval_section(answered))
    print(summarize(report, report_location=store.location(f"{prefix}/report.html")).text, end="")
    return EXIT_OK


def _answer_cloud(args: argparse.Namespace, *, approve: bool) -> int:
    import boto3

    from pipeline.cloud.approval_step import answer_approval
    from pipeline.storage.store import S3Store

    store = S3Store(args.bucket, client=boto3.client("s3"))
    record = answer_approval(store, boto3.client("stepfunctions"), campaign=args.campaign, run_id=args.run,
                             approve=approve, by=_user(), reason=getattr(args, "reason", None) or None)
    verb = "approved" if approve else "rejected"
    print(f"{record.campaign} run {record.run_id} {verb}; the execution goes on to "
          f"{'render its clips' if approve else 'write its report'}: {store.location(f'runs/{record.campaign}/{record.run_id}/report.html')}")
    return EXIT_OK


def cmd_enhance(args: argparse.Namespace) -> int:
    from pipeline import catalog
    from pipeline.backends import select_backends
    from pipeline.tasks.prompts import fit_prompt

    model = catalog.VIDEO_MODELS[args.model or catalog.DEFAULT_VIDEO_MODEL]
    backends = select_backends(enhancer=args.enhancer or "passthrough", enhancer_model=args.enhancer_model)
    raw = backends.enhancer.enhance(args.prompt)
    fitted = fit_prompt(raw, model.max_prompt_tokens)
    print(fitted.text)
    note = f" (trimmed from ~{fitted.original_tokens})" if fitted.trimmed else ""
    print(f"[{backends.enhancer.name}: ~{fitted.tokens}/{model.max_prompt_tokens} tokens{note}]", file=sys.stderr)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    if not args.bucket:
        raise BackendUnavailable("submit needs --bucket or CAMPAIGN_INPUT_BUCKET (the stack's InputBucketName output)")
    from pipeline.cloud import commands

    result = commands.submit(args.manifest, bucket=args.bucket, state_machine_arn=args.state_machine_arn,
                             allow_outside=tuple(args.allow_outside), replace=args.replace, team=args.team)
    for k, v in result.items():
        print(f"{k}: {v}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    if not args.state_machine_arn:
        raise BackendUnavailable("status needs --state-machine-arn or CAMPAIGN_STATE_MACHINE_ARN (a stack output)")
    from pipeline.cloud import commands

    rows = commands.status(args.campaign, state_machine_arn=args.state_machine_arn, limit=args.limit)
    if not rows:
        print("no executions")
    for row in rows:
        print("  ".join(str(row.get(k, "")) for k in ("name", "status", "started", "failed_items", "console_url")))
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from pipeline.errors import OutputFolderRefused
    from pipeline.storage.integrity import verify_cache
    from pipeline.storage.store import LocalStore

    if not (args.out / "cache").is_dir():
        raise OutputFolderRefused(f"--out {args.out}: there is no cache here (no {args.out / 'cache'} folder)")
    report = verify_cache(LocalStore(args.out))
    levels = report.by_level
    print(f"{report.checked} cache entr{'y' if report.checked == 1 else 'ies'} in {args.out / 'cache'}: "
          f"{levels.get('sha256', 0)} match their recorded sha256, {levels.get('legacy', 0)} have none recorded "
          f"(made by an older version; checked non-empty), {len(report.repairs)} damaged")
    for fix in report.repairs:
        print(f"  damaged {fix.entry}: {fix.problem}; moved to {args.out / fix.moved_to} (the next run makes it again)")
    return EXIT_FAILED if report.repairs else EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    from pipeline.credentials.read import read_credentials

    status = EXIT_OK
    for path in args.files:
        found = read_credentials(path)
        print("\n".join(found.lines()))
        status = status if found.intact else EXIT_FAILED
    return status


def cmd_models(args: argparse.Namespace) -> int:
    if args.models_command == "list":
        from pipeline.plan.pricing import DEFAULT_INSTANCE_TYPE, format_registry, registry_rows

        rows = registry_rows(args.instance_type or DEFAULT_INSTANCE_TYPE)
        print(json.dumps(rows, indent=2) if args.json else format_registry(rows))
        return EXIT_OK
    from pipeline.backends.weights import pull_model

    for line in pull_model(args.model, args.to) or []:
        print(line)
    return EXIT_OK


def cmd_studio(args: argparse.Namespace) -> int:
    try:
        import streamlit  # noqa: F401

        from pipeline.studio.server import serve
    except ImportError as exc:
        raise BackendUnavailable(f"the studio needs streamlit (pip install -e .): {exc}") from exc
    from pipeline.studio.config import StudioConfig

    backends_from_args(args)  # a bad backend choice fails here, with its message, not later in the page
    if not args.workspace.is_dir():
        raise PipelineError(f"--workspace {args.workspace}: not a folder")
    config = StudioConfig(out_dir=args.out.resolve(), backend_argv=backend_flags(args), input_bucket=args.bucket,
                          output_bucket=args.output_bucket, state_machine_arn=args.state_machine_arn, workers=args.workers,
                          workspace=args.workspace.resolve(), admins=tuple(args.admin))
    return serve(config, port=args.port, address=args.address, auth=args.auth, allowed_hosts=tuple(args.allowed_host))


def cmd_review(args: argparse.Namespace) -> int:
    from pipeline.report.write import new_run_id, refresh_review
    from pipeline.review.commands import review
    from pipeline.review.decisions import REGENERATE

    if args.bucket and args.action == REGENERATE:
        return _cloud_regenerate(args)
    regenerate = review(args, by=_user(), load=lambda: _load_campaign(args.manifest, args), refresh=refresh_review,
                        new_run_id=new_run_id)
    if regenerate is None:
        return EXIT_OK
    campaign, backends, plan = _plan(args)  # the decision is stored: its override applies
    return _run(args, campaign, backends, plan, run_id=regenerate, gate=False)


def _cloud_regenerate(args: argparse.Namespace) -> int:
    """`campaign review CAMPAIGN ITEM --regenerate --bucket B`: the request kept in the output bucket, and one
    execution that makes the item and what depends on it (pipeline/cloud/commands.py)."""
    from pipeline.cloud import commands
    from pipeline.review.commands import requested_override

    if not args.state_machine_arn:
        raise BackendUnavailable("a regenerate with --bucket needs --state-machine-arn or CAMPAIGN_STATE_MACHINE_ARN "
                                 "(the stack's StateMachineArn output)")
    if args.manifest is not None:
        raise ReviewRefused("--manifest is for a local run; a cloud run is regenerated from the manifest version it "
                            "was planned from")
    result = commands.regenerate(output_bucket=args.bucket, campaign=args.campaign, item=args.item, run_id=args.run,
                                 override=requested_override(args.item, args), note=args.note, by=_user(),
                                 state_machine_arn=args.state_machine_arn)
    print(f"{result['item']}: regenerating ({result['asked']}) in run {result['run']}, which replaces its version of "
          f"{result['replaces']}")
    print(f"  report (when it ends): {result['report']}")
    print(f"  console: {result['console_url']}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.review.commands import run_export

    print("\n".join(run_export(args, by=_user())))
    return EXIT_OK


_COMMANDS = {"review": cmd_review, "export": cmd_export, "validate": cmd_validate, "plan": cmd_plan, "run": cmd_run, "enhance": cmd_enhance,
             "submit": cmd_submit, "status": cmd_status, "models": cmd_models, "studio": cmd_studio,
             "cache": cmd_cache, "approve": cmd_approve, "reject": cmd_reject, "credentials": cmd_credentials}


if __name__ == "__main__":
    sys.exit(main())
