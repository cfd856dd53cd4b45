"""The CDK app synthesized offline (cdk-nag's AwsSolutions checks included) and its template checked for the
properties and relationships the design asks for; the template by cfn-lint, its definition by asl-validator
and statelint (each skipped with a message only when the tool is not installed: `make test` installs them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk import Stack  # noqa: E402
from aws_cdk.assertions import Match, Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STACK = "CampaignPipeline"
if str(ROOT) not in sys.path:  # cdk_app.py and infra/ live at the repository root, outside the package
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Template, Path]]:
    """One synth for the module (about 5 s; later Template queries are cheap). The layer is a stub: the real
    one (infra/build_layer.py, ~24 MB) matters at deploy time, not for the template."""
    from cdk_app import _cdk_json_context, build_app
    from infra.build_layer import build

    tmp = tmp_path_factory.mktemp("cdk")
    layer = build(tmp / "layer", stub=True)
    context = {**_cdk_json_context(), "layer_dir": str(layer)}
    app = build_app(context, outdir=str(tmp / "cdk.out"))
    assembly = app.synth()  # runs the AwsSolutions checks: an unacknowledged finding raises here
    stack = cast(Stack, app.node.find_child(STACK))
    yield stack, Template.from_stack(stack), Path(assembly.directory)


def resources(template: Template, kind: str) -> dict[str, Any]:
    return dict(template.find_resources(kind))


def only(template: Template, kind: str, **match: Any) -> tuple[str, dict[str, Any]]:
    hits = [(lid, r) for lid, r in resources(template, kind).items()
            if all(r.get("Properties", {}).get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (kind, match, [lid for lid, _ in hits])
    return hits[0]


def function_by_handler(template: Template, module: str) -> tuple[str, dict[str, Any]]:
    for lid, r in resources(template, "AWS::Lambda::Function").items():
        p = r["Properties"]
        if p.get("Handler") == f"tasks.{module}.handler" or p.get("ImageConfig", {}).get("Command") == [f"tasks.{module}.handler"]:
            return lid, r
    raise AssertionError(f"no function runs tasks/{module}.py")


def statements(template: Template, role_lid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_lid} in r["Properties"]["Roles"]:
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def actions_of(statement: dict[str, Any]) -> set[str]:
    a = statement["Action"]
    return {a} if isinstance(a, str) else set(a)


# --- buckets --------------------------------------------------------------------------------------------------


def test_buckets_are_encrypted_private_tls_only_and_access_logged(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    buckets = resources(t, "AWS::S3::Bucket")
    assert len(buckets) == 3
    logs_lid = next(lid for lid, r in buckets.items() if "LoggingConfiguration" not in r["Properties"])
    for lid, r in buckets.items():
        p = r["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == \
            {"SSEAlgorithm": "AES256"}
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert r["DeletionPolicy"] == "Retain"
        if lid != logs_lid:
            assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_lid}
    for r in resources(t, "AWS::S3::BucketPolicy").values():
        deny = [s for s in r["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in deny)
    assert {r["Properties"]["Bucket"]["Ref"] for r in resources(t, "AWS::S3::BucketPolicy").values()} == set(buckets)


def test_input_bucket_is_versioned_and_sends_events_to_eventbridge_without_a_custom_resource(
        synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    t.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
    })
    assert resources(t, "Custom::S3BucketNotifications") == {}


def test_output_bucket_expires_the_cache_and_map_run_results_only(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    outputs = [r for r in resources(t, "AWS::S3::Bucket").values()
               if any(rule.get("Prefix") == "cache/" for rule in r["Properties"].get("LifecycleConfiguration", {}).get("Rules", []))]
    assert len(outputs) == 1
    rules = outputs[0]["Properties"]["LifecycleConfiguration"]["Rules"]
    cache = next(rule for rule in rules if rule.get("Prefix") == "cache/")
    assert cache["ExpirationInDays"] == 90 and cache["Status"] == "Enabled"
    map_runs = next(rule for rule in rules if rule.get("Prefix") == "map-runs/")
    assert map_runs["ExpirationInDays"] == 14
    assert not any("ExpirationInDays" in rule and rule.get("Prefix") not in ("cache/", "map-runs/") for rule in rules)


# --- the state machine ---------------------------------------------------------------------------------------------


def test_state_machine_is_standard_logged_traced_and_inline(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    lid, sm = only(t, "AWS::StepFunctions::StateMachine")
    p = sm["Properties"]
    assert p["StateMachineType"] == "STANDARD"
    assert p["TracingConfiguration"] == {"Enabled": True}
    assert p["LoggingConfiguration"]["Level"] == "ALL" and p["LoggingConfiguration"]["IncludeExecutionData"] is True
    log_lid = p["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert resources(t, "AWS::Logs::LogGroup")[log_lid]["Properties"]["RetentionInDays"] == 30
    # inline: the ASL file itself, placeholders filled by DefinitionSubstitutions (not an S3 location)
    assert "DefinitionS3Location" not in p
    assert json.loads(p["DefinitionString"]) == json.loads((ROOT / "state_machines" / "campaign.asl.json").read_text())


def test_each_placeholder_is_filled_with_the_function_that_runs_that_task(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    _, sm = only(t, "AWS::StepFunctions::StateMachine")
    subs = sm["Properties"]["DefinitionSubstitutions"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", sm["Properties"]["DefinitionString"]))
    assert placeholders == set(subs)
    for placeholder, module in {"PlanFunctionArn": "plan", "EnhanceFunctionArn": "enhance", "ImageFunctionArn": "image",
                                "PrepareBatchFunctionArn": "prepare_batch", "CollectBatchFunctionArn": "collect_batch",
                                "AssembleFunctionArn": "assemble", "ReportFunctionArn": "report"}.items():
        lid, _ = function_by_handler(t, module)
        assert subs[placeholder] == {"Fn::GetAtt": [lid, "Arn"]}, placeholder
    output_lid = function_by_handler(t, "plan")[1]["Properties"]["Environment"]["Variables"]["CAMPAIGN_OUTPUT_BUCKET"]
    assert subs["OutputBucket"] == output_lid
    assert subs["JobConcurrency"] == "8" and subs["GpuConcurrency"] == "2"  # cdk.json context
    assert subs["DistributedMapThreshold"] == "500"  # infra/settings.py default (cdk.json leaves it out)
    assert subs["CapacityWaitSeconds"] == "60" and subs["RenderAttempts"] == "3"  # infra/workflow.py


def test_state_machine_role_can_run_processing_jobs_with_only_the_renderer_role(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    _, sm = only(t, "AWS::StepFunctions::StateMachine")
    role_lid = sm["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    stmts = statements(t, role_lid)
    sagemaker_role = function_by_handler(t, "prepare_batch")[1]["Properties"]["Environment"]["Variables"][
        "CAMPAIGN_SAGEMAKER_ROLE_ARN"]
    pass_role = [s for s in stmts if actions_of(s) == {"iam:PassRole"}]
    assert pass_role == [{"Action": "iam:PassRole", "Effect": "Allow", "Resource": sagemaker_role,
                          "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}}]
    assert any({"sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob"} <= actions_of(s) for s in stmts)
    rule = next(s for s in stmts if "events:PutRule" in actions_of(s))
    assert "StepFunctionsGetEventsForSageMakerProcessingJobsRule" in json.dumps(rule["Resource"])
    invoke = {json.dumps(r) for s in stmts if actions_of(s) == {"lambda:InvokeFunction"} for r in s["Resource"]}
    for module in ("plan", "enhance", "image", "prepare_batch", "collect_batch", "assemble", "report"):
        assert json.dumps({"Fn::GetAtt": [function_by_handler(t, module)[0], "Arn"]}) in invoke
    assert not any("starter" in r.lower() for r in invoke)


def test_state_machine_role_can_run_its_distributed_maps_and_no_more(synth: tuple[Any, Template, Path]) -> None:
    """Distributed Map IAM: start child executions of this state machine only, describe/stop only its own
    executions, read the stage item lists, write the Map Runs' result files; nothing else in the bucket."""
    _, t, _ = synth
    sm_lid, sm = only(t, "AWS::StepFunctions::StateMachine")
    stmts = statements(t, sm["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    states = [s for s in stmts if any(a.startswith("states:") for a in actions_of(s))]
    assert {a for s in states for a in actions_of(s)} == {"states:StartExecution", "states:DescribeExecution",
                                                         "states:StopExecution"}
    [start] = [s for s in states if "states:StartExecution" in actions_of(s)]
    assert actions_of(start) == {"states:StartExecution"} and start["Resource"] == {"Ref": sm_lid}
    [children] = [s for s in states if "states:DescribeExecution" in actions_of(s)]
    resource = json.dumps(children["Resource"])
    assert ":execution:" in resource and json.dumps({"Fn::GetAtt": [sm_lid, "Name"]}) in resource and "/*" in resource
    s3_statements = [s for s in stmts if any(a.startswith("s3:") for a in actions_of(s))]
    by_resource = {re.findall(r'"(/[^"]*)"', json.dumps(s["Resource"]))[-1]: actions_of(s) for s in s3_statements}
    assert by_resource == {
        "/runs/*/results/*": {"s3:PutObject"},  # the `Record ... failure` states
        "/runs/*/stages/*": {"s3:GetObject"},  # ItemReader
        "/map-runs/*": {"s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"},
        "/runs/*/ray2-jobs/*": {"s3:PutObject"},  # Luma Ray2 (infra/ray2.py, tests/test_ray2_template.py)
    }, by_resource
    assert len(s3_statements) == 4


# --- functions -----------------------------------------------------------------------------------------------------


def test_light_functions_are_python_312_zips_with_the_layer_and_media_functions_are_images(
        synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    layer_lid, _ = only(t, "AWS::Lambda::LayerVersion")
    for module in ("plan", "enhance", "image", "report", "starter"):
        p = function_by_handler(t, module)[1]["Properties"]
        assert p["Runtime"] == "python3.12" and p["Layers"] == [{"Ref": layer_lid}], module
        assert p["TracingConfig"] == {"Mode": "Active"} and p["Architectures"] == ["x86_64"]
    for module in ("prepare_batch", "collect_batch", "assemble"):
        p = function_by_handler(t, module)[1]["Properties"]
        assert p["PackageType"] == "Image" and "Runtime" not in p, module
    t.has_resource_properties("AWS::Lambda::LayerVersion", {"CompatibleRuntimes": ["python3.12"]})


def test_task_functions_can_only_touch_their_buckets_and_models(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    env = function_by_handler(t, "plan")[1]["Properties"]["Environment"]["Variables"]
    output_lid = env["CAMPAIGN_OUTPUT_BUCKET"]["Ref"]
    for module in ("plan", "enhance", "image", "prepare_batch", "collect_batch", "assemble", "report"):
        role = function_by_handler(t, module)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
        stmts = statements(t, role)
        s3_actions = set().union(*(actions_of(s) for s in stmts if any(a.startswith("s3:") for a in actions_of(s))))
        assert s3_actions <= {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket"}, module
        assert any("s3:PutObject" in actions_of(s) and output_lid in json.dumps(s["Resource"]) for s in stmts), module
    enhance_role = function_by_handler(t, "enhance")[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    bedrock = [s for s in statements(t, enhance_role) if "bedrock:InvokeModel" in actions_of(s)]
    assert "anthropic.claude" in json.dumps(bedrock) and "stability" not in json.dumps(bedrock)
    image_role = function_by_handler(t, "image")[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    stability = json.dumps([s for s in statements(t, image_role) if "bedrock:InvokeModel" in actions_of(s)])
    assert stability.count("inference-profile/us.stability.") == 13
    for module in ("plan", "prepare_batch", "collect_batch", "assemble", "report"):
        role = function_by_handler(t, module)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
        allowed = {"bedrock:GetFoundationModel"} if module == "plan" else set()  # the model check (infra/ray2.py)
        assert {a for s in statements(t, role) for a in actions_of(s) if a.startswith("bedrock:")} <= allowed, module


def test_sagemaker_role_is_scoped_to_batches_and_the_weights_prefix(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    roles = resources(t, "AWS::IAM::Role")
    [lid] = [lid for lid, r in roles.items()
             if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}]
    stmts = statements(t, lid)
    s3_resources = json.dumps([s["Resource"] for s in stmts if any(a.startswith("s3:Get") or a.startswith("s3:Put")
                                                                     for a in actions_of(s))])
    assert "/runs/*/batches/*" in s3_resources and "/models/*" in s3_resources
    assert '"/*"' not in s3_resources  # never the whole bucket
    lists = [s for s in stmts if actions_of(s) == {"s3:ListBucket"}]
    assert all("s3:prefix" in json.dumps(s["Condition"]) for s in lists) and lists


# --- triggers and schedules ---------------------------------------------------------------------------------------------


def test_manifest_events_reach_the_starter_with_a_dead_letter_queue(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    starter_lid, starter = function_by_handler(t, "starter")
    _, rule = only(t, "AWS::Events::Rule")
    p = rule["Properties"]
    input_lid = p["EventPattern"]["detail"]["bucket"]["name"][0]["Ref"]
    assert resources(t, "AWS::S3::Bucket")[input_lid]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert p["EventPattern"]["source"] == ["aws.s3"]
    assert sorted(p["EventPattern"]["detail-type"]) == ["Object Created", "Object Deleted"]
    assert p["EventPattern"]["detail"]["object"]["key"] == [{"wildcard": "manifests/*.yaml"},
                                                             {"wildcard": "manifests/*.yml"}]
    [target] = p["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [starter_lid, "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    env = starter["Properties"]["Environment"]["Variables"]
    _, sm = only(t, "AWS::StepFunctions::StateMachine")
    assert env["CAMPAIGN_STATE_MACHINE_ARN"]["Ref"] in resources(t, "AWS::StepFunctions::StateMachine")
    assert env["CAMPAIGN_SCHEDULE_GROUP"] == {"Ref": only(t, "AWS::Scheduler::ScheduleGroup")[0]}


def test_schedules_have_their_own_least_privilege_role(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    starter = function_by_handler(t, "starter")[1]["Properties"]
    role_lid = starter["Environment"]["Variables"]["CAMPAIGN_SCHEDULER_ROLE_ARN"]["Fn::GetAtt"][0]
    trust = resources(t, "AWS::IAM::Role")[role_lid]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    stmts = statements(t, role_lid)
    assert {a for s in stmts for a in actions_of(s)} == {"states:StartExecution"}
    sm_lid, _ = only(t, "AWS::StepFunctions::StateMachine")
    assert all(s["Resource"] == {"Ref": sm_lid} for s in stmts)
    starter_role = starter["Role"]["Fn::GetAtt"][0]
    starter_stmts = statements(t, starter_role)
    pass_role = [s for s in starter_stmts if actions_of(s) == {"iam:PassRole"}]
    assert pass_role and pass_role[0]["Resource"] == {"Fn::GetAtt": [role_lid, "Arn"]}
    assert pass_role[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


def test_outputs_and_no_account_or_region_in_the_template(synth: tuple[Any, Template, Path]) -> None:
    stack, t, _ = synth
    outputs = t.to_json()["Outputs"]
    assert {"InputBucketName", "OutputBucketName", "StateMachineArn", "ExecutionsConsoleUrl"} <= set(outputs)
    assert "console.aws.amazon.com/states/home" in json.dumps(outputs["ExecutionsConsoleUrl"])
    assert aws_cdk.Token.is_unresolved(stack.account) and aws_cdk.Token.is_unresolved(stack.region)
    assert not re.search(r"\b\d{12}\b", json.dumps(t.to_json()).replace("123456789012", ""))
    t.has_output("StateMachineArn", {"Value": {"Ref": Match.any_value()}})


def test_clip_container_is_a_docker_image_asset_built_at_deploy(synth: tuple[Any, Template, Path]) -> None:
    _, _, out = synth
    assets = json.loads((out / f"{STACK}.assets.json").read_text())["dockerImages"]
    sources = {a["source"]["directory"]: a["source"] for a in assets.values()}
    container = [d for d in sources if (out / d / "generate.py").is_file()]
    assert len(container) == 1 and (out / container[0] / "Dockerfile").is_file()
    lambda_image = [d for d, s in sources.items() if s.get("dockerFile") == "infra/lambda_image/Dockerfile"]
    assert len(lambda_image) == 1
    staged = {p.relative_to(out / lambda_image[0]).parts[0] for p in (out / lambda_image[0]).rglob("*") if p.is_file()}
    assert staged == {"pipeline", "tasks", "infra", "pyproject.toml"}


# --- independent validators ---------------------------------------------------------------------------------------------


def rendered_definition(template: Template) -> str:
    """The definition as Step Functions would receive it: DefinitionSubstitutions applied, with plausible
    values where the template has references."""
    sm = next(iter(template.find_resources("AWS::StepFunctions::StateMachine").values()))["Properties"]
    text = sm["DefinitionString"]
    for name, value in sm["DefinitionSubstitutions"].items():
        if isinstance(value, dict):
            value = (f"arn:aws:lambda:us-east-1:123456789012:function:{name}" if "Fn::GetAtt" in value
                     else "campaignpipeline-output-0123456789ab")
        text = text.replace("${" + name + "}", str(value))
    assert "${" not in text
    return text


def run_tool(cmd: list[str], *, tool: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        pytest.skip(f"{tool} is not installed (make test installs it)")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def asl_validator() -> list[str]:
    local = ROOT / "node_modules" / ".bin" / "asl-validator"
    if not local.exists():
        pytest.skip("asl-validator is not installed (npm ci installs it from package-lock.json; make test does)")
    return [str(local)]


def statelint() -> list[str]:
    exe = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "statelint"
    found = shutil.which("statelint") or (str(exe) if exe.exists() else None)
    if found is None:
        pytest.skip("statelint is not installed (pip install statelint==3.1.0; make test does)")
    return [found]


@pytest.fixture(scope="module")
def definition_files(synth: tuple[Any, Template, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    _, t, _ = synth
    synthesized = tmp_path_factory.mktemp("asl") / "synthesized.asl.json"
    synthesized.write_text(rendered_definition(t))
    return [ROOT / "state_machines" / "campaign.asl.json", synthesized]


def test_asl_validator_accepts_the_file_and_the_synthesized_definition(definition_files: list[Path]) -> None:
    cmd = asl_validator()
    for path in definition_files:
        result = run_tool([*cmd, "--json-path", str(path)], tool="asl-validator")
        assert result.returncode == 0, result.stdout + result.stderr


# statelint 3.1.0 predates `ReaderConfig.InputType`, which an ItemReader reading one JSON object from S3
# needs (`arn:aws:states:::s3:getObject`; asl-validator and cfn-lint know it, and moto reads the object as
# text without it). That one finding, once per Distributed Map, is all it may report.
STATELINT_UNKNOWN_FIELD = re.compile(r'Field "InputType" not allowed in State Machine\..*\.ItemReader\.ReaderConfig')


def test_statelint_accepts_the_file_and_the_synthesized_definition(definition_files: list[Path]) -> None:
    cmd = statelint()
    readers = len(re.findall(r'"ItemReader"', definition_files[0].read_text()))
    for path in definition_files:
        result = run_tool([*cmd, str(path)], tool="statelint")
        lines = [line.strip() for line in result.stdout.splitlines()[1:] if line.strip()]
        other = [line for line in lines if not STATELINT_UNKNOWN_FIELD.fullmatch(line)]
        assert result.returncode == 0 or (not other and len(lines) == readers), result.stdout + result.stderr


def test_cfn_lint_accepts_the_template(synth: tuple[Any, Template, Path]) -> None:
    _, _, out = synth
    exe = shutil.which("cfn-lint") or str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "cfn-lint")
    result = run_tool([exe, "--ignore-checks", "W3005", "--", str(out / f"{STACK}.template.json")], tool="cfn-lint")
    assert result.returncode == 0, result.stdout + result.stderr
