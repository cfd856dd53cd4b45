"""Every AWS request a test makes, checked against the service's own botocore model.

botocore's built-in validation (on by default) checks required members, member names and types, but not a
string's `max` length, `pattern` or `enum`, nor a number's range; moto accepts much of what AWS refuses. The
`ModelCheck` here runs on every client made while it is installed (any session, boto3's default included),
before the request is built: botocore's `ParamValidator` first (explicitly, whatever the client's config
says), then the model's enum, length, range and pattern constraints. A violation raises `ModelViolation` at
the call and is also kept, so a caller that swallows exceptions still fails the test at teardown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator


class ModelViolation(AssertionError):
    """A request that the service model says AWS would refuse."""


@dataclass
class ModelCheck:
    checked: list[str] = field(default_factory=list)  # "service.Operation" per request, in order
    violations: list[str] = field(default_factory=list)

    def attach(self, client: Any) -> Any:
        client.meta.events.register_first("before-parameter-build", self._check, unique_id=f"model-check-{id(self)}")
        return client

    def operations(self, service: str) -> set[str]:
        return {c.split(".", 1)[1] for c in self.checked if c.split(".", 1)[0] == service}

    def _check(self, params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        where = f"{model.service_model.service_name}.{model.name}"
        self.checked.append(where)
        problems: list[str] = []
        if model.input_shape is not None:
            report = ParamValidator().validate(params, model.input_shape)
            if report.has_errors():
                problems.append(report.generate_report())
            _constraints(params, model.input_shape, model.name, problems)
        elif params:
            problems.append(f"{model.name} takes no parameters, got {sorted(params)}")
        if problems:
            message = f"{where}: " + "; ".join(problems)
            self.violations.append(message)
            raise ModelViolation(message)


def _constraints(value: Any, shape: Shape, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _constraints(value[name], member, f"{path}.{name}", problems)
    elif isinstance(shape, ListShape) and isinstance(value, (list, tuple)):
        _length(len(value), meta, path, problems)
        for i, item in enumerate(value):
            _constraints(item, shape.member, f"{path}[{i}]", problems)
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        _length(len(value), meta, path, problems)
        for k, v in value.items():
            _constraints(k, shape.key, f"{path} key {k!r}", problems)
            _constraints(v, shape.value, f"{path}[{k!r}]", problems)
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}={value!r} is not one of {shape.enum}")
        _length(len(value), meta, path, problems)
        pattern = meta.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:  # a Java-only construct (\p{...}); botocore's model is for the JVM too
                compiled = None
            # whole-value match: the stricter reading (Smithy leaves patterns unanchored; that services match
            # the whole value, as a name with a space being refused suggests, is unverified for each)
            if compiled is not None and not compiled.fullmatch(value):
                problems.append(f"{path}={value!r} does not match {pattern!r}")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
            problems.append(f"{path}={value} is outside [{meta.get('min')}, {meta.get('max')}]")


def _length(n: int, meta: dict[str, Any], path: str, problems: list[str]) -> None:
    if "min" in meta and n < meta["min"] or "max" in meta and n > meta["max"]:
        problems.append(f"{path} has length {n}, outside [{meta.get('min')}, {meta.get('max')}]")


@contextmanager
def model_checked() -> Iterator[ModelCheck]:
    """Check every client created inside the block (boto3.client, Session().client, botocore sessions)."""
    check = ModelCheck()
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        return check.attach(original(self, *args, **kwargs))

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        yield check
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
    if check.violations:
        raise ModelViolation("requests the service model refuses:\n" + "\n".join(check.violations))
