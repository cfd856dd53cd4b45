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
from pathlib import Path
from typing import Any

import pytest
from cdk_synth import synth as cdk_synth

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cloud]')")
from aws_cdk.assertions import Match, Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STACK = "CampaignPipeline"
if str(ROOT) not in sys.path:  # cdk_app.py and infra/ live at the repository root, outside the package
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def synth() -> tuple[Any, Template, Path]:
    """The default context's synth (tests/cdk_synth.py: once per test process; later Template queries are
    cheap)."""
    made = cdk_synth()
    return made.stack, made.template, made.assembly


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
    bedrock_output = next(rule for rule in rules if rule.get("Prefix") == "bedrock-output/")  # Ray2's raw output
    assert bedrock_output["ExpirationInDays"] == 14
    assert not any("ExpirationInDays" in rule and rule.get("Prefix") not in ("cache/", "map-runs/", "bedrock-output/")
                   for rule in rules)


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
                                "AssembleFunctionArn": "assemble", "ReportFunctionArn": "report",
                                "VoiceFunctionArn": "voice"}.items():
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
    for module in ("prepare_batch", "collect_batch", "voice", "assemble"):
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


def test_the_voice_function_may_only_synthesize_speech_paced_by_the_polly_quota(
        synth: tuple[Any, Template, Path]) -> None:
    """Issue 25: `Speak utterance` is an image function (run_voice measures speech with pipeline/media) granted
    polly:SynthesizeSpeech and nothing of the synthesis-task API; the voice Map's MaxConcurrency and each Lambda's
    spacing come from one quota (8 requests/s: 8 slots, one request a second each)."""
    _, t, _ = synth
    fn = function_by_handler(t, "voice")[1]["Properties"]
    assert fn["PackageType"] == "Image" and fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["Environment"]["Variables"]["CAMPAIGN_POLLY_TPS"] == "8"
    polly = [s for s in statements(t, fn["Role"]["Fn::GetAtt"][0]) if any(a.startswith("polly:") for a in actions_of(s))]
    assert {a for s in polly for a in actions_of(s) if a.startswith("polly:")} == {"polly:SynthesizeSpeech"}
    assert [s["Resource"] for s in polly] == ["*"]  # CDK merges it with X-Ray's statement, also on "*"
    others = [lid for lid, r in resources(t, "AWS::IAM::Policy").items()
              if "polly:" in json.dumps(r["Properties"]["PolicyDocument"])]
    assert len(others) == 1  # no other role may call Polly
    _, sm = only(t, "AWS::StepFunctions::StateMachine")
    assert sm["Properties"]["DefinitionSubstitutions"]["VoiceConcurrency"] == "8"


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
    [rule] = [r for r in resources(t, "AWS::Events::Rule").values()
              if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]]  # the others: infra/notifications.py
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


def s3_event(detail_type: str, key: str, **detail: str) -> dict[str, Any]:
    """An event as S3 sends it to EventBridge (AmazonS3/latest/userguide/ev-events.html)."""
    return {"version": "0", "id": "1", "detail-type": detail_type, "source": "aws.s3", "account": "123456789012",
            "time": "2026-03-01T09:00:00Z", "region": "us-east-1", "resources": ["arn:aws:s3:::input"],
            "detail": {"version": "0", "bucket": {"name": "input"},
                       "object": {"key": key, "sequencer": "0065A1B2C3D4E5F600"}, **detail}}


def test_the_rule_delivers_exactly_what_the_starter_acts_on(synth: tuple[Any, Template, Path]) -> None:
    """The synthesized pattern, evaluated by moto's EventBridge matcher: lifecycle expirations of old versions
    never reach the starter, delete markers and uploads do, and keys match as `is_manifest_key` says."""
    from moto.events.models import EventPattern

    from pipeline.cloud.names import is_manifest_key

    _, t, _ = synth
    [rule] = [r for r in resources(t, "AWS::Events::Rule").values()
              if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]]  # the others: infra/notifications.py
    pattern = json.loads(json.dumps(rule["Properties"]["EventPattern"]).replace(
        json.dumps(rule["Properties"]["EventPattern"]["detail"]["bucket"]["name"][0]), '"input"'))
    matches = EventPattern.load(json.dumps(pattern)).matches_event
    assert matches(s3_event("Object Created", "manifests/a.yaml", reason="PutObject"))
    assert matches(s3_event("Object Deleted", "manifests/a.yaml", reason="DeleteObject",
                            **{"deletion-type": "Delete Marker Created"}))
    assert matches(s3_event("Object Deleted", "manifests/a.yaml", reason="DeleteObject",
                            **{"deletion-type": "Permanently Deleted"}))
    assert not matches(s3_event("Object Deleted", "manifests/a.yaml", reason="Lifecycle Expiration",
                                **{"deletion-type": "Permanently Deleted"}))
    assert matches(s3_event("Object Deleted", "manifests/a.yaml", reason="Lifecycle Expiration",
                            **{"deletion-type": "Delete Marker Created"}))  # a current version expired
    for key in ("manifests/a.yaml", "manifests/a/b.yml", "manifests/x.YAML", "manifests/x.Yml", "assets/a.yaml",
                "manifests/a.yaml.bak", "manifests/red flower.yaml"):
        assert matches(s3_event("Object Created", key, reason="PutObject")) == is_manifest_key(key), key


def test_events_the_starter_fails_on_are_kept_and_alarmed(synth: tuple[Any, Template, Path]) -> None:
    """Lambda retries a failed async event twice, then discards it unless an on-failure destination keeps it
    (lambda/latest/dg/invocation-async-error-handling.html); the target's DLQ only gets undeliverable events."""
    _, t, _ = synth
    starter_lid, _ = function_by_handler(t, "starter")
    [rule] = [r for r in resources(t, "AWS::Events::Rule").values()
              if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]]  # the others: infra/notifications.py
    queue_arn = rule["Properties"]["Targets"][0]["DeadLetterConfig"]["Arn"]
    _, invoke = only(t, "AWS::Lambda::EventInvokeConfig")
    p = invoke["Properties"]
    assert p["FunctionName"] == {"Ref": starter_lid} and p["Qualifier"] == "$LATEST"
    assert p["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
    assert p["MaximumRetryAttempts"] == 2 and p["MaximumEventAgeInSeconds"] == 6 * 3600
    starter_role = function_by_handler(t, "starter")[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    assert any("sqs:SendMessage" in actions_of(s) and s["Resource"] == queue_arn for s in statements(t, starter_role))
    _, alarm = only(t, "AWS::CloudWatch::Alarm")
    a = alarm["Properties"]
    assert a["Namespace"] == "AWS/SQS" and a["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_arn["Fn::GetAtt"][0], "QueueName"]}}]
    assert a["Threshold"] == 1 and a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    outputs = t.to_json()["Outputs"]
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": queue_arn["Fn::GetAtt"][0]}
    assert "starter failed on 3 times" in outputs["DeadLetterQueueUrl"]["Description"]
    assert outputs["FailedEventsAlarmName"]["Value"] == {"Ref": only(t, "AWS::CloudWatch::Alarm")[0]}


def test_schedules_have_their_own_least_privilege_role(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    starter = function_by_handler(t, "starter")[1]["Properties"]
    role_lid = starter["Environment"]["Variables"]["CAMPAIGN_SCHEDULER_ROLE_ARN"]["Fn::GetAtt"][0]
    trust = resources(t, "AWS::IAM::Role")[role_lid]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    # the schedule GROUP's ARN, never schedule/<group>/* (scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html)
    group_name = only(t, "AWS::Scheduler::ScheduleGroup")[1]["Properties"]["Name"]
    assert trust["Condition"] == {"StringEquals": {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"},
        "aws:SourceArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":scheduler:", {"Ref": "AWS::Region"},
                                            ":", {"Ref": "AWS::AccountId"}, f":schedule-group/{group_name}"]]}}}
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
    # what `campaign run --video sagemaker` from a laptop needs: the clip jobs' role and image (README walkthrough)
    role_lid = outputs["SageMakerRoleArn"]["Value"]["Fn::GetAtt"][0]
    trust = resources(t, "AWS::IAM::Role")[role_lid]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert outputs["SageMakerRoleArn"]["Value"] == {"Fn::GetAtt": [role_lid, "Arn"]}
    assert ".dkr.ecr." in json.dumps(outputs["SageMakerImageUri"]["Value"])


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


def test_task_functions_read_only_manifests_and_submitted_assets_of_the_input_bucket(
        synth: tuple[Any, Template, Path]) -> None:
    """Issue 29: the whole input bucket is no longer readable; per manifest, the plan step narrows it further
    (pipeline/cloud/tenancy.py, tests/test_cloud_tenants.py). The tenant settings reach every task function."""
    stack, t, _ = synth
    input_lid = stack.resolve(stack.buckets.input.node.default_child.logical_id)
    for module in ("plan", "image", "prepare_batch", "collect_batch", "assemble", "report"):
        fn = function_by_handler(t, module)[1]["Properties"]
        reads = [s for s in statements(t, fn["Role"]["Fn::GetAtt"][0])
                 if "s3:GetObjectVersion" in actions_of(s) and input_lid in json.dumps(s["Resource"])]
        [statement] = reads
        suffixes = sorted(part["Fn::Join"][1][-1] for part in statement["Resource"])
        assert suffixes == ["/assets/*", "/manifests/*"], (module, suffixes)
        assert fn["Environment"]["Variables"]["CAMPAIGN_MIN_SCHEDULE_INTERVAL_S"] == "3600", module


# --- IAM: exactly what the code calls ----------------------------------------------------------------------------

XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}  # Tracing.ACTIVE
TASK_S3 = {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket"}
MARKETPLACE = {"aws-marketplace:Subscribe", "aws-marketplace:Unsubscribe", "aws-marketplace:ViewSubscriptions"}
PUBLISH = {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"}  # the notification topic and its key
# Each role, and every action its code (or the service acting for it) calls: boto3 calls in pipeline/ and tasks/,
# the ASL's integrations, SageMaker's processing container, CDK's log delivery for the state machine.
SIGN = {"kms:Sign", "kms:GetPublicKey", "ssm:GetParameter"}  # Content Credentials (infra/signing.py)
EXPECTED_ACTIONS = {
    "plan": TASK_S3 | XRAY | {"bedrock:GetFoundationModel"},  # the model lifecycle check (infra/ray2.py)
    "enhance": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "bedrock:InvokeModel"} | MARKETPLACE | XRAY,
    "image": TASK_S3 | {"bedrock:InvokeModel"} | MARKETPLACE | XRAY,
    "prepare_batch": TASK_S3 | XRAY,
    "collect_batch": TASK_S3 | XRAY,
    "assemble": TASK_S3 | XRAY,
    "voice": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "polly:SynthesizeSpeech"} | XRAY,
    "report": TASK_S3 | XRAY | PUBLISH | SIGN,
    "starter": {"s3:GetObject", "s3:GetObjectVersion", "states:StartExecution", "states:DescribeExecution",
                "scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule",
                "scheduler:GetSchedule", "iam:PassRole",
                # the on-failure destination (CDK's grantSendMessages for SqsDestination)
                "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"} | XRAY,
    "approval": {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} | PUBLISH | XRAY | SIGN,
    "scheduler": {"states:StartExecution"},
    "state machine": {"aws-marketplace:Unsubscribe", "aws-marketplace:ViewSubscriptions", "lambda:InvokeFunction", "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                      "sagemaker:StopProcessingJob", "sagemaker:AddTags", "events:PutTargets", "events:PutRule",
                      "events:DescribeRule", "iam:PassRole", "s3:GetObject", "s3:PutObject",
                      "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload", "states:StartExecution",
                      "states:DescribeExecution", "states:StopExecution", "logs:CreateLogDelivery",
                      "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
                      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
                      "logs:DescribeLogGroups", "xray:GetSamplingRules", "xray:GetSamplingTargets",
                      # Luma Ray2 through the SDK integration: StartAsyncInvoke needs InvokeModel, then polls
                      "bedrock:InvokeModel", "bedrock:GetAsyncInvoke"} | XRAY,
    # the processing job: its batch's files and the weights, the image pull, its logs and metrics
    "renderer": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecr:BatchCheckLayerAvailability",
                 "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken",
                 "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
                 "cloudwatch:PutMetricData"},
}
# Actions that have no resource type (Service Authorization Reference): the only ones allowed on "*".
# polly:SynthesizeSpeech names a lexicon only when one is used, and none is ("Amazon Polly API Permissions").
UNSCOPED = XRAY | MARKETPLACE | {"polly:SynthesizeSpeech", "xray:GetSamplingRules", "xray:GetSamplingTargets", "ecr:GetAuthorizationToken",
                                 "cloudwatch:PutMetricData", "logs:CreateLogDelivery", "logs:GetLogDelivery",
                                 "logs:UpdateLogDelivery", "logs:DeleteLogDelivery", "logs:ListLogDeliveries",
                                 "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"}


def roles_by_purpose(t: Template) -> dict[str, str]:
    out = {module: function_by_handler(t, module)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
           for module in ("plan", "enhance", "image", "prepare_batch", "collect_batch", "assemble", "report", "starter",
                          "approval", "voice")}
    by_principal = {json.dumps(r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]): lid
                    for lid, r in resources(t, "AWS::IAM::Role").items()}
    out["scheduler"] = by_principal[json.dumps({"Service": "scheduler.amazonaws.com"})]
    out["state machine"] = by_principal[json.dumps({"Service": "states.amazonaws.com"})]
    out["renderer"] = by_principal[json.dumps({"Service": "sagemaker.amazonaws.com"})]
    return out


def test_each_role_is_granted_exactly_what_its_code_calls_on_scoped_resources(synth: tuple[Any, Template, Path]) -> None:
    _, t, _ = synth
    roles = roles_by_purpose(t)
    assert set(roles.values()) == set(resources(t, "AWS::IAM::Role")), "a role this test does not know"
    granted = {purpose: {a for s in statements(t, lid) for a in actions_of(s)} for purpose, lid in roles.items()}
    assert granted == EXPECTED_ACTIONS, {p: (sorted(granted[p] - EXPECTED_ACTIONS[p]), sorted(EXPECTED_ACTIONS[p] - granted[p]))
                                         for p in granted if granted[p] != EXPECTED_ACTIONS[p]}
    for purpose, lid in roles.items():
        for s in statements(t, lid):
            assert s["Effect"] == "Allow"
            assert not any("*" in a for a in actions_of(s)), (purpose, s["Action"])
            if s["Resource"] == "*" or "*" in (s["Resource"] if isinstance(s["Resource"], list) else []):
                assert actions_of(s) <= UNSCOPED, (purpose, s)


def test_only_the_bedrock_callers_may_subscribe_through_marketplace(synth: tuple[Any, Template, Path]) -> None:
    """A fresh account's first call to Claude or a Stability model subscribes through AWS Marketplace
    (bedrock/latest/userguide/model-access.html): the calling roles need these three actions."""
    _, t, _ = synth
    for purpose, lid in roles_by_purpose(t).items():
        marketplace = [s for s in statements(t, lid) if actions_of(s) & MARKETPLACE]
        if purpose in ("enhance", "image"):  # no resource type: on "*" (CDK merges them with X-Ray's)
            assert len(marketplace) == 1 and MARKETPLACE <= actions_of(marketplace[0])
            assert marketplace[0]["Resource"] == "*" and "Condition" not in marketplace[0]
        elif purpose == "state machine":  # Luma Ray2: Subscribe only with ray2_product_id, narrowed to it
            # (tests/test_cloud_quotas.py); without it the role may view and unsubscribe, not subscribe
            assert [actions_of(s) for s in marketplace] == [MARKETPLACE - {"aws-marketplace:Subscribe"}]
        else:
            assert marketplace == [], purpose


def find_in_map(t: Template, value: Any, region: str) -> Any:
    """Resolve Fn::FindInMap / Fn::Join over the template's Mappings for one region."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        name, key, attr = value["Fn::FindInMap"]
        assert key == {"Ref": "AWS::Region"}
        return t.to_json()["Mappings"][name].get(region, {}).get(attr)
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        resolved = [find_in_map(t, p, region) for p in parts]
        return None if None in resolved else sep.join(str(p) for p in resolved)
    return value


@pytest.mark.parametrize(("region", "expected"), [
    ("us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("eu-central-1", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("ap-southeast-2", "apac.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("ca-central-1", None), ("sa-east-1", None),
])
def test_the_default_enhancer_profile_follows_the_stack_region(synth: tuple[Any, Template, Path], region: str,
                                                               expected: str | None) -> None:
    _, t, _ = synth
    env = function_by_handler(t, "enhance")[1]["Properties"]["Environment"]["Variables"]
    assert find_in_map(t, env["CAMPAIGN_ENHANCER_MODEL"], region) == expected
    role = function_by_handler(t, "enhance")[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    [invoke] = [s for s in statements(t, role) if "bedrock:InvokeModel" in actions_of(s)]
    profiles = [r for r in invoke["Resource"] if "inference-profile/" in json.dumps(r)]
    assert len(profiles) == 1 and json.dumps(env["CAMPAIGN_ENHANCER_MODEL"]) in json.dumps(profiles[0])
    [assertion] = t.to_json()["Rules"]["BedrockRegion"]["Assertions"]
    allowed, ref = assertion["Assert"]["Fn::Contains"]
    assert ref == {"Ref": "AWS::Region"} and (region in allowed) == (expected is not None)
    assert "geographic cross-Region inference profile" in assertion["AssertDescription"]


def test_a_stability_region_outside_the_us_is_refused_at_synth() -> None:
    from infra.settings import StackSettings

    with pytest.raises(ValueError, match=r"stability_region 'eu-west-1'.*us\. cross-Region inference profile"):
        StackSettings(stability_region="eu-west-1").check()
    StackSettings(stability_region="us-east-2").check()
    StackSettings(images="local", stability_region="eu-west-1").check()  # not called at all then


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


def test_run_notifications_topic_is_encrypted_tls_only_and_catches_runs_that_end_outside_the_report(
        synth: tuple[Any, Template, Path]) -> None:
    """Issue 15: the topic the report and approval steps publish to, and the EventBridge rules on the state
    machine's status changes for the runs that end elsewhere (invalid, over budget, timed out, aborted)."""
    _, t, _ = synth
    [(topic_lid, topic)] = resources(t, "AWS::SNS::Topic").items()
    key_lid = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = resources(t, "AWS::KMS::Key")[key_lid]["Properties"]
    assert key["EnableKeyRotation"] is True
    # EventBridge's rules and the failed-events alarm (CloudWatch) publish to the encrypted topic
    assert any(st["Principal"] == {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]}
               for st in key["KeyPolicy"]["Statement"])
    [policy] = [r["Properties"] for r in resources(t, "AWS::SNS::TopicPolicy").values()]
    deny = [st for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = [r["Properties"] for r in resources(t, "AWS::Events::Rule").values()
             if r["Properties"]["EventPattern"]["source"] == ["aws.states"]]
    statuses = sorted(s for r in rules for s in r["EventPattern"]["detail"]["status"])
    assert statuses == ["ABORTED", "FAILED", "TIMED_OUT"]
    failed = next(r for r in rules if r["EventPattern"]["detail"]["status"] == ["FAILED"])
    assert failed["EventPattern"]["detail"]["error"] == [{"anything-but": ["CampaignFailed"]}]
    for r in rules:
        assert r["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
        assert r["Targets"][0]["Arn"] == {"Ref": topic_lid}
    # the report and approval functions get the topic in their environment and may publish to it
    for handler in ("report", "approval"):
        _, fn = function_by_handler(t, handler)
        assert fn["Properties"]["Environment"]["Variables"]["CAMPAIGN_NOTIFY_TOPIC_ARN"] == {"Ref": topic_lid}
    publishers = [st for r in resources(t, "AWS::IAM::Policy").values()
                  for st in r["Properties"]["PolicyDocument"]["Statement"] if st.get("Action") == "sns:Publish"]
    assert len(publishers) == 2 and all(st["Resource"] == {"Ref": topic_lid} for st in publishers)


def test_only_the_functions_that_publish_files_may_sign_with_the_signing_key(synth: tuple[Any, Template, Path]) -> None:
    """Content Credentials (infra/signing.py): the report and approval functions publish delivered files under
    runs/..., so they, and only they, may call kms:Sign on the stack's ECC P-256 key."""
    _, template, _ = synth
    [(key_lid, _)] = [(lid, r) for lid, r in resources(template, "AWS::KMS::Key").items()
                      if r["Properties"].get("KeySpec") == "ECC_NIST_P256"]
    signers = set()
    for fn in resources(template, "AWS::Lambda::Function").values():
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        if any("kms:Sign" in str(s["Action"]) and key_lid in json.dumps(s["Resource"]) for s in statements(template, role)):
            signers.add(fn["Properties"].get("Handler") or fn["Properties"].get("ImageConfig", {}).get("Command", [""])[0])
            assert "CAMPAIGN_SIGNING_KMS_KEY" in fn["Properties"]["Environment"]["Variables"]
    assert signers == {"tasks.report.handler", "tasks.approval.handler"}
