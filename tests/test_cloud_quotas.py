"""AWS's rate and concurrency quotas as stack settings: the documented table (docs/quotas.md) is the code's; every
Map's MaxConcurrency comes from them; Ray2 batches are spread one per wave; a deployment whose SageMaker instance
quota is 0 refuses CogVideoX shots at planning; the wall time they imply. And the grants and operations around
them, on the synthesized template: Marketplace Subscribe narrowed to Ray2's product, the failed-events alarm on
the notification topic, a lifecycle rule on bedrock-output/; the Ray2 idempotency token per attempt."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from pipeline.cloud.contract import RAY2_OUTPUT_PREFIX
from pipeline.cloud.quotas import QUOTAS, markdown_table, quotas, sagemaker_quota_problems, spread_ray2, wall_time
from pipeline.cloud.ray2 import attempt_token
from pipeline.manifest.campaign import load_manifest_text
from pipeline.manifest.yamlsrc import load_text
from pipeline.plan.schedule import BEDROCK, SAGEMAKER, ClipBatch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
ASL = json.loads((ROOT / "state_machines" / "campaign.asl.json").read_text())
PRODUCT = "prod-test0ray2"


def test_the_documented_quota_table_is_the_codes() -> None:
    doc = (ROOT / "docs" / "quotas.md").read_text(encoding="utf-8")
    assert markdown_table() in doc  # regenerate: python -c "from pipeline.cloud.quotas import markdown_table; ..."
    assert all(q.source and re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", q.checked) for q in QUOTAS)
    assert quotas({"ray2_concurrency": "3"})["ray2_concurrency"] == 3
    for bad, message in (({"nope": 1}, "unknown quota 'nope'"), ({"ray2_concurrency": "x"}, "whole number"),
                         ({"lambda_concurrency": -1}, "at least 0")):
        with pytest.raises(ValueError, match=message):
            quotas(bad)


def maps(machine: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in machine["States"].items():
        if state["Type"] == "Map":
            yield name, state
        for sub in [*state.get("Branches", ()), *([state["ItemProcessor"]] if "ItemProcessor" in state else [])]:
            yield from maps(sub)


def test_every_map_takes_its_concurrency_from_the_stacks_quota_settings() -> None:
    paths = {}
    for name, state in maps(ASL):
        assert "MaxConcurrency" not in state or state["MaxConcurrency"] == 1, name  # 1: waves one after another
        paths[name] = state.get("MaxConcurrencyPath", "1")
    assert {p for n, p in paths.items() if "Ray2" in n} == {"$.ray2_concurrency"}
    batch_maps = {p for n, p in paths.items() if n in ("Render clips", "Render clips (distributed)")
                  or n.startswith("Render clip wave")}
    assert batch_maps == {"$.limits.gpu_batches"}
    assert paths["Render clips that wait"] == paths["Edit images"] == "1"  # the Maps over waves
    assert {p for n, p in paths.items() if n.startswith(("Enhance", "Edit image wave", "Assemble"))} == {"$.limits.jobs"}
    limits = ASL["States"]["Read settings"]["Parameters"]["limits"]
    assert limits["ray2_concurrency.$"] == "States.StringToJson('${Ray2Concurrency}')"


def batch(i: int, service: str, n: int) -> ClipBatch:
    return ClipBatch(f"b{i}", tuple(f"c{i}-{k}" for k in range(n)), service)


def test_ray2_batches_are_split_to_size_and_spread_one_per_wave() -> None:
    first = (batch(0, SAGEMAKER, 8), batch(1, BEDROCK, 5), batch(2, BEDROCK, 2))
    later = ((batch(3, BEDROCK, 3), batch(4, SAGEMAKER, 1)),)
    new_first, new_later = spread_ray2(first, later, size=2)
    assert [(b.id, b.service, len(b.jobs)) for b in new_first] == [("b0", SAGEMAKER, 8), ("b1-1", BEDROCK, 2)]
    assert [[(b.id, len(b.jobs)) for b in w] for w in new_later] == [
        [("b1-2", 2)], [("b1-3", 1)], [("b2", 2)], [("b4", 1), ("b3-1", 2)], [("b3-2", 1)]]
    every = [j for b in (*new_first, *(b for w in new_later for b in w)) for j in b.jobs]
    assert sorted(every) == sorted(j for b in (*first, *later[0]) for j in b.jobs)  # nothing lost or doubled
    assert all(sum(b.service == BEDROCK for b in w) <= 1 for w in (new_first, *new_later))


def test_a_zero_sagemaker_quota_refuses_cogvideox_shots_at_planning_with_the_quota_named(tmp_path: Path) -> None:
    text = ("campaign: quota-test\nvideos:\n  - id: v\n    shots:\n      - {prompt: A bee., model: cogvideox-5b}\n"
            "      - {prompt: A sofa., model: luma-ray2, resolution: 540p}\n")
    campaign = load_manifest_text(text, file="q.yaml", base_dir=tmp_path, check_files=False)
    src = load_text(text, "q.yaml")
    [problem] = sagemaker_quota_problems(campaign, src, "sagemaker+bedrock", 0)
    assert (problem.line, problem.path) == (5, "videos[0].shots[0]")
    assert "processing-instance quota (sagemaker_instances" in problem.message and "is 0" in problem.message
    assert sagemaker_quota_problems(campaign, src, "sagemaker+bedrock", 2) == []


def test_the_wall_time_follows_the_quotas() -> None:
    limits = quotas()
    [ray2, total] = wall_time(enhance=0, images=0, image_waves=0, sagemaker_clips=0, sagemaker_batches=0,
                              ray2_clips=40, videos=0, job_concurrency=8, limits=limits)
    assert ray2.text == "40 Ray2 clip(s) at 1 at a time, about 72 s each: about 48 minutes"
    [faster, _] = wall_time(enhance=0, images=0, image_waves=0, sagemaker_clips=0, sagemaker_batches=0, ray2_clips=40,
                            videos=0, job_concurrency=8, limits=quotas({"ray2_concurrency": 4}))
    assert faster.seconds == ray2.seconds / 4 and total.seconds == ray2.seconds
    [gpu, _] = wall_time(enhance=0, images=0, image_waves=0, sagemaker_clips=80, sagemaker_batches=10, ray2_clips=0,
                         videos=0, job_concurrency=8, limits=limits)
    assert "on 2 instance(s) at once (5 wave(s))" in gpu.text and gpu.seconds == 5 * (300 + 8 * 180) + 10


def test_the_ray2_token_is_one_per_attempt_and_valid_for_botocore() -> None:
    shape = (botocore.session.get_session().get_service_model("bedrock-runtime")
             .operation_model("StartAsyncInvoke").input_shape.members["clientRequestToken"])
    pattern, low, high = shape.metadata["pattern"], shape.metadata["min"], shape.metadata["max"]
    first, again, other = attempt_token("k1", "run-1"), attempt_token("k1", "run-1"), attempt_token("k1", "run-2")
    assert first == again and first != other != attempt_token("k2", "run-1")
    for token in (first, other):
        assert re.fullmatch(pattern, token) and low <= len(token) <= high


# --- the template ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed")

    from cdk_synth import synth

    # tests/cdk_synth.py: cdk-nag's AwsSolutions checks run; an unacknowledged finding raises
    return synth(ray2_product_id=PRODUCT, ray2_concurrency=2, sagemaker_instances=3).template


def test_marketplace_subscribe_is_narrowed_to_ray2s_product_on_the_state_machines_role(template: Any) -> None:
    [sm] = template.find_resources("AWS::StepFunctions::StateMachine").values()
    role = sm["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    stmts = [s for r in template.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in r["Properties"]["Roles"]
             for s in r["Properties"]["PolicyDocument"]["Statement"]]
    market = [s for s in stmts if any(str(a).startswith("aws-marketplace:") for a in _list(s["Action"]))]
    by_action = {a: s for s in market for a in _list(s["Action"])}
    assert set(by_action) == {"aws-marketplace:Subscribe", "aws-marketplace:Unsubscribe",
                              "aws-marketplace:ViewSubscriptions"}
    assert by_action["aws-marketplace:Subscribe"]["Condition"] == {
        "ForAnyValue:StringEquals": {"aws-marketplace:ProductId": [PRODUCT]}}
    # the quota settings reach the definition and the plan step
    assert sm["Properties"]["DefinitionSubstitutions"]["Ray2Concurrency"] == "2"
    plan = next(r for r in template.find_resources("AWS::Lambda::Function").values()
                if r["Properties"].get("Handler") == "tasks.plan.handler")
    assert plan["Properties"]["Environment"]["Variables"]["CAMPAIGN_SAGEMAKER_INSTANCES"] == "3"


def test_the_failed_events_alarm_tells_the_notification_topic(template: Any) -> None:
    [alarm] = [a for a in template.find_resources("AWS::CloudWatch::Alarm").values()
               if "failed-events queue" in a["Properties"]["AlarmDescription"]]
    [(topic_lid, topic)] = template.find_resources("AWS::SNS::Topic").items()
    assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_lid}]
    key_lid = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]  # the topic's key (the stack has a signing key too)
    key = template.find_resources("AWS::KMS::Key")[key_lid]
    principals = json.dumps(key["Properties"]["KeyPolicy"])
    assert "cloudwatch.amazonaws.com" in principals  # the alarm may publish to the encrypted topic


def test_bedrock_output_has_a_lifecycle_rule(template: Any) -> None:
    rules = [r for b in template.find_resources("AWS::S3::Bucket").values()
             for r in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])]
    [rule] = [r for r in rules if r.get("Prefix") == RAY2_OUTPUT_PREFIX]
    assert rule["Status"] == "Enabled" and 0 < rule["ExpirationInDays"] <= 30


def test_a_gpu_concurrency_over_the_instance_quota_is_refused_with_the_quota_named() -> None:
    from infra.settings import StackSettings

    with pytest.raises(ValueError, match="gpu_concurrency 3 is more than the quota sagemaker_instances"):
        StackSettings(gpu_concurrency=3, quotas=quotas({"sagemaker_instances": 2})).check_quotas()
    with pytest.raises(ValueError, match="ray2_concurrency is 0"):
        StackSettings(quotas=quotas({"ray2_concurrency": 0})).check_quotas()
    StackSettings(gpu_concurrency=2, quotas=quotas({"sagemaker_instances": 0})).check_quotas()  # refused per shot


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
