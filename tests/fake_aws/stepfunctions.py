"""Run the real ASL file under moto's Step Functions interpreter, its Tasks routed to in-process Python.

moto 5.2.5 interprets Pass/Choice/Map/Parallel/Retry/Catch and `aws-sdk:s3:putObject` itself. Two things
it cannot do are replaced here (reference/toolchain.md, "Executing the state machine offline"):

1. `lambda:invoke`: moto's docker-less Lambda backend echoes its input; `route_lambdas` makes it call
   the real handler in `tasks/` instead, and turns a raised exception into a Lambda function error
   whose `errorType` is the exception's class name, exactly what Step Functions' Retry/Catch match on.
2. `sagemaker:createProcessingJob.sync`: unsupported ("Unsupported .sync callback procedure");
   `route_sagemaker` swaps in a task service that validates the request against botocore's model
   of CreateProcessingJob, runs a Python stand-in for the container, and ends like the real
   integration: DescribeProcessingJob's output on success, `States.TaskFailed` with it as the cause
   on failure.

3. `aws-sdk:bedrockruntime:startAsyncInvoke` / `getAsyncInvoke` (Luma Ray2 jobs): moto's AWS SDK task would
   call moto's Bedrock Runtime, which has no async API. `route_bedrock_runtime` answers them from the fake
   Bedrock (fake_bedrock_async.AsyncVideoService) the way the integration does: parameters arrive in
   PascalCase and are matched to botocore's bedrock-runtime model (an unknown or missing field is a recorded
   problem), the answer goes back PascalCased, and a service error becomes `BedrockRuntime.<Code>` (the
   integration's exception prefix, supported-services-awssdk.html).

These touch moto internals, so moto is pinned exactly and `test_cloud_moto_canary.py` checks them.

Distributed Maps need no routing: moto runs them as shipped (ItemReader `s3:getObject` on its S3, child
executions through the same interpreter, so the routed Lambdas and SageMaker apply there too, a
ResultWriter that writes the Map Run's manifest). Two differences from AWS shape the ASL (the canary
checks both): an integer `ToleratedFailurePercentage` does not parse, and a ResultWriter's `Prefix.$` is
evaluated against the results.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import boto3
import botocore.session
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import DefaultConfig
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.common.path import result_path as _result_path
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl as _retrier_decl
from moto.stepfunctions.parser.asl.component.component import Component
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import json_path as _json_path
from moto.stepfunctions.parser.asl.utils.json_path import extract_json
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

MOTO_CONFIG = cast(DefaultConfig, {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})

# moto's ASL lexer reads `RoleArn` as the Credentials keyword, so a `"RoleArn.$": "$.path"` field inside
# Parameters keeps its literal key and path instead of being resolved (AWS resolves it). The routed
# SageMaker task resolves it itself; test_cloud_moto_canary.py notices when moto fixes this.
MOTO_ROLE_ARN_PATH_KEY = "RoleArn.$"

Handler = Callable[[dict[str, Any], Any], Any]
# A stand-in for the processing container: gets the CreateProcessingJob request, returns
# (ProcessingJobStatus, FailureReason or None).
ContainerRun = Callable[[dict[str, Any]], tuple[str, str | None]]


class LambdaCalls:
    """Every routed invocation, in order: (function name, event, outcome) for assertions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def add(self, name: str, event: dict[str, Any], outcome: str) -> None:
        with self._lock:
            self.calls.append((name, event, outcome))

    def named(self, name: str) -> list[tuple[str, dict[str, Any], str]]:
        return [c for c in self.calls if c[0] == name]


@functools.cache
def _processing_job_members() -> frozenset[str]:
    """CreateProcessingJob's request fields, read from botocore's SageMaker model once per process: a new
    session per state entered re-read that JSON file each time (a fifth of a cloud test's CPU)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.operation_model("CreateProcessingJob").input_shape.members)


# The latest few definitions (a test's, and its Map children's) are kept. lru_cache keeps no exception, so a
# definition that is refused is parsed, and refused, every time.
_parse = AmazonStateLanguageParser.parse  # moto's own, before it is replaced below
_tree = functools.lru_cache(maxsize=8)(lambda definition: _parse(definition)[1])


# The components moto's Preprocessor builds from a tree only describe the definition: an execution's state lives in
# its Environment (moto's inline Map already evaluates the same state components in several iterations at once,
# and an AST scan of moto/stepfunctions/parser/asl/component finds no attribute a component sets while it
# evaluates but its heap key, drawn at build below; the routed SageMaker task keeps its answers by job name).
# They are kept per definition and per task-service routing in force (route_sagemaker and
# route_bedrock_runtime make the Preprocessor build routed services), so the 40 child executions of one Map run
# build them once, not 40 times (the Preprocessor was a sixth of the cloud modules' Python CPU).
@functools.lru_cache(maxsize=8)
def _program(definition: str, service_for: Any) -> Any:
    return _keyed(Preprocessor().visit(_tree(definition)))


def components(program: Any) -> Iterator[Any]:
    """Every moto component reachable from `program` (through attributes, lists, tuples, sets and dicts), once."""
    seen: set[int] = set()
    todo = [program]
    while todo:
        item = todo.pop()
        if isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, Component) and id(item) not in seen:
            seen.add(id(item))
            yield item
            todo.extend(vars(item).values())


def _keyed(program: Any) -> Any:
    """Every component of `program` given its heap key before any execution can read it. EvalComponent.heap_key
    is drawn on first read, unguarded, and a Retry's attempt count is kept in the execution's heap under its
    MaxAttemptsDecl's key: two threads reading a fresh component's key at once could each draw one and count
    attempts under two keys. Drawn here, while one thread holds the new components, the key never changes."""
    for component in components(program):
        if isinstance(component, EvalComponent):
            _ = component.heap_key
    return program


def _parse_once(definition: str) -> tuple[Any, Any]:
    """moto parses the whole definition with ANTLR on CreateStateMachine and again on every execution and child
    execution (0.75 s of CPU for ours), then builds its evaluation components. Both depend only on the text (and
    the routing above), so both are kept. (TestState's parser subclass has a parse of its own.)"""
    return _program(definition, state_task_factory.state_task_service_for), _tree(definition)


# CreateStateMachine checks a definition by parsing it and building its components, then drops them (a quarter of
# the cloud modules' Python CPU: every test creates the same machines). The check depends only on the text, so a
# definition it accepted is accepted again without the work (one it refused raises, and is checked every time).
_validate_once = functools.lru_cache(maxsize=8)(StepFunctionsParserBackend._validate_definition)

AmazonStateLanguageParser.parse = staticmethod(_parse_once)  # type: ignore[method-assign,assignment]
StepFunctionsParserBackend._validate_definition = staticmethod(_validate_once)  # type: ignore[method-assign]

# moto evaluates a state's InputPath, ResultPath, ItemsPath... by parsing the path with jsonpath-ng each time, and
# jsonpath-ng builds its parser (LR tables included) for every parse. A parsed path is only read when it is
# applied, so each path text is parsed once per process.
_json_path.parse = functools.lru_cache(maxsize=1024)(_json_path.parse)  # type: ignore[assignment]
_result_path.parse = functools.lru_cache(maxsize=1024)(_result_path.parse)  # type: ignore[assignment]


class _RetryClock:
    """The clock moto's Retry waits on: a retrier's interval (IntervalSeconds, backed off and jittered by moto) is
    not slept. The intervals are the ASL's own (tests/test_cloud_asl.py checks them against the documented retry
    settings); what the executions show is the attempts made, which a sleep does not change. Every fake service
    that throttles does so by count, never by time."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(0)  # still lets the execution's other threads run, as a real wait would


_retrier_decl.time = _RetryClock()  # type: ignore[assignment]


@contextmanager
def route_lambdas(handlers: Mapping[str, Handler]) -> Iterator[LambdaCalls]:
    """Invocations of a function whose name (or ARN's last part) is a key of `handlers` call that handler."""
    original = LambdaSimpleBackend.invoke
    calls = LambdaCalls()

    def invoke(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        handler = handlers.get(name)
        if handler is None:
            raise AssertionError(f"no handler routed for Lambda function {function_name!r} (have {sorted(handlers)})")
        event = json.loads(body or b"{}")
        try:
            result = handler(event, None)
        except Exception as exc:  # the Lambda runtime's shape of an unhandled error
            calls.add(name, event, type(exc).__name__)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "stackTrace": traceback.format_tb(exc.__traceback__)}).encode()
        calls.add(name, event, "ok")
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


# DescribeProcessingJob's answer for each job created and not yet resolved, by ProcessingJobName (unique per job).
_DESCRIBED: dict[str, dict[str, Any]] = {}


class _RoutedProcessingJob(StateTaskServiceCallback):
    """`arn:aws:states:::sagemaker:createProcessingJob.sync` with a Python container."""

    container: ContainerRun

    def __init__(self) -> None:
        # WaitForTaskToken is listed only because moto's callback plumbing expects an endpoint for .sync too.
        super().__init__(supported_integration_patterns=cast(Any, {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}))

    def _get_supported_parameters(self) -> set[str] | None:
        if self.resource.api_action.lower() != "createprocessingjob":
            return None
        return set(_processing_job_members()) | {MOTO_ROLE_ARN_PATH_KEY}

    def _eval_parameters(self, env: Any) -> dict:
        parameters = super()._eval_parameters(env)
        path = parameters.pop(MOTO_ROLE_ARN_PATH_KEY, None)
        if path is not None:  # see MOTO_ROLE_ARN_PATH_KEY
            parameters["RoleArn"] = extract_json(path, env.states.get_input())
        return parameters

    def _eval_service_task(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                           state_credentials: Any) -> None:
        # botocore validates the request against the real API model; moto records the job.
        client = boto3.client("sagemaker", region_name=resource_runtime_part.region)
        created = client.create_processing_job(**normalised_parameters)
        status, reason = type(self).container(normalised_parameters)
        described = client.describe_processing_job(ProcessingJobName=normalised_parameters["ProcessingJobName"])
        described.pop("ResponseMetadata", None)
        described["ProcessingJobStatus"] = status
        if reason:
            described["FailureReason"] = reason
        # kept by job name, not on the component: one component serves every execution of its definition
        _DESCRIBED[normalised_parameters["ProcessingJobName"]] = json.loads(json.dumps(described, default=str))
        env.stack.append({"ProcessingJobArn": created["ProcessingJobArn"]})

    def _build_sync_resolver(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                             state_credentials: Any) -> Callable[[], Any]:
        env.stack.pop()  # the create output; .sync returns DescribeProcessingJob's instead
        described = _DESCRIBED.pop(normalised_parameters["ProcessingJobName"])

        def resolve() -> Any:
            if described["ProcessingJobStatus"] == "Completed":
                return described
            raise FailureEventException(FailureEvent(
                env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                    resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                    error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=json.dumps(described)))))

        return resolve


@contextmanager
def route_sagemaker(container: ContainerRun) -> Iterator[None]:
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return _RoutedProcessingJob()
        return original(service_name)

    _RoutedProcessingJob.container = staticmethod(container)
    state_task_factory.state_task_service_for = service_for
    try:
        yield
    finally:
        state_task_factory.state_task_service_for = original


class _RoutedAwsSdk(StateTaskServiceAwsSdk):
    """`aws-sdk:*` tasks as moto runs them, except `bedrockruntime`, answered by `service` (an AsyncVideoService)."""

    service: Any

    @staticmethod
    def _normalise_service_error_name(service_name: str) -> str:
        # the integration's exception prefix for Bedrock Runtime (moto lower-cases unknown services)
        return "BedrockRuntime" if service_name.lower() == "bedrockruntime" else StateTaskServiceAwsSdk._normalise_service_error_name(service_name)

    def _eval_service_task(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                           state_credentials: Any) -> None:
        if self.resource.api_name != "bedrockruntime":
            super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
            return
        from botocore.exceptions import ParamValidationError
        from botocore.validate import validate_parameters
        from fake_bedrock_async import RUNTIME, ServiceFault

        action = self.resource.api_action
        operation = RUNTIME.operation_model(action[:1].upper() + action[1:])
        client = boto3.client("bedrock-runtime", region_name=resource_runtime_part.region)
        try:
            params = boto_cased(normalised_parameters, operation.input_shape)
            validate_parameters(params, operation.input_shape)
        except (ParamValidationError, KeyError) as exc:
            type(self).service.problems.append(f"{operation.name} through Step Functions: {exc}")
            raise client.exceptions.ValidationException(
                {"Error": {"Code": "ValidationException", "Message": str(exc)},
                 "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "fake"}}, operation.name) from exc
        try:
            if operation.name == "StartAsyncInvoke":
                answer = type(self).service.start_job(params)
            elif operation.name == "GetAsyncInvoke":
                answer = type(self).service.job_status(params["invocationArn"])
            else:
                raise AssertionError(f"no fake for bedrockruntime:{action}")
        except ServiceFault as fault:
            raise client.exceptions.from_code(fault.code)(
                {"Error": {"Code": fault.code, "Message": fault.message},
                 "ResponseMetadata": {"HTTPStatusCode": fault.status, "RequestId": "fake"}}, operation.name) from fault
        env.stack.append(sfn_cased_answer(answer, operation.output_shape))


def boto_cased(value: Any, shape: Any) -> Any:
    """A PascalCase SDK-integration request -> botocore's member names (structures only; documents as they are).
    An unknown field raises KeyError naming it."""
    if shape.type_name == "structure" and not shape.metadata.get("document") and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            member = key[:1].lower() + key[1:]
            if member not in shape.members:
                raise KeyError(f"{key!r} is not a member of {shape.name} ({sorted(shape.members)})")
            out[member] = boto_cased(item, shape.members[member])
        return out
    return value


def sfn_cased_answer(value: Any, shape: Any) -> Any:
    """A botocore-shaped answer as the integration returns it: structure members PascalCased, timestamps as
    ISO 8601 text."""
    from datetime import UTC, datetime

    if shape.type_name == "structure" and not shape.metadata.get("document") and isinstance(value, dict):
        return {k[:1].upper() + k[1:]: sfn_cased_answer(v, shape.members[k]) for k, v in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value


@contextmanager
def route_bedrock_runtime(service: Any) -> Iterator[Any]:
    """`aws-sdk:bedrockruntime:*` tasks answered by `service` (fake_bedrock_async.AsyncVideoService)."""
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str) -> Any:
        if service_name == "aws-sdk":
            return _RoutedAwsSdk()
        return original(service_name)

    _RoutedAwsSdk.service = service
    state_task_factory.state_task_service_for = service_for
    try:
        yield service
    finally:
        state_task_factory.state_task_service_for = original


def substitute(definition: str, values: Mapping[str, str]) -> str:
    """What CDK's definition_substitutions does: replace each ${Name}; fail on one left over."""
    for name, value in values.items():
        definition = definition.replace("${" + name + "}", value)
    if "${" in definition:
        start = definition.index("${")
        raise AssertionError(f"unfilled placeholder near {definition[start:start + 40]!r}")
    return definition


def wait_for(sfn: Any, execution_arn: str, *, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    pause = 0.05
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {execution_arn} still RUNNING after {timeout_s}s")
        time.sleep(pause)
        # each poll is a moto request (model-checked) that holds the GIL the execution's threads need: back off
        pause = min(0.5, pause * 1.5)
