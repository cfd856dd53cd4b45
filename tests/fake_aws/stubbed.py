"""A botocore Stubber on the real client that code under test makes for itself (with its own config), for a
service no fake answers offline: the code's own client construction runs, and every request it sends is checked
against the service model by the Stubber (and by `model_checked`, when installed) instead of being sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import botocore.session
from botocore.stub import Stubber


@contextmanager
def stubbed_clients(service: str, prepare: Callable[[Stubber], None]) -> Iterator[list[Stubber]]:
    """Inside the block each `service` client made (boto3.client, Session().client, botocore sessions) is
    activated under a Stubber that `prepare` has given its expected requests and responses; the Stubbers are
    yielded in the order their clients were made. Other services' clients are made as usual."""
    stubbers: list[Stubber] = []
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = original(self, service_name, *args, **kwargs)
        if service_name == service:
            stubber = Stubber(client)
            prepare(stubber)
            stubber.activate()
            stubbers.append(stubber)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        yield stubbers
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
        for stubber in stubbers:
            stubber.deactivate()
