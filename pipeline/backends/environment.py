"""The process environment the backends run in: AWS_REGION honoured by boto3, third-party noise kept quiet."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

# Libraries the optional backends import, whose import-time warnings and logs (torchao's extension load failures,
# torch deprecations raised from transformers) say nothing a campaign author can act on.
NOISY_LIBRARIES = ("torch", "torchao", "transformers", "diffusers", "accelerate", "huggingface_hub", "gguf")
# Read by the libraries themselves at import, which is when they reset their loggers (so a level set here before
# would be lost): transformers' verbosity (huggingface.co/docs/transformers/main_classes/logging,
# TRANSFORMERS_VERBOSITY), and torch's, whose import resets the `torch` logger to WARNING unless TORCH_LOGS says
# otherwise ("-name" is ERROR: torch/_logging/_internal.py, _parse_log_settings). torchao's import-time pytree
# deprecations are logged through that logger.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TORCH_LOGS": "-torch"}


@contextlib.contextmanager
def _env_defaults(values: dict[str, str]) -> Iterator[None]:
    """Set the variables that are not set, and put the environment back afterwards (tests call `main` in-process)."""
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def aws_region_honoured() -> contextlib.AbstractContextManager[None]:
    """botocore reads the region from AWS_DEFAULT_REGION and the profile only (botocore/configprovider.py:
    'region': ('region', 'AWS_DEFAULT_REGION', ...)); AWS_REGION, which Lambda and the other SDKs set and the
    README documents, is passed on to it when AWS_DEFAULT_REGION is unset."""
    region = os.environ.get("AWS_REGION")
    return _env_defaults({"AWS_DEFAULT_REGION": region} if region else {})


@contextlib.contextmanager
def third_party_quiet(verbose: bool) -> Iterator[None]:
    """Unless `verbose`, hide the optional libraries' warnings and their logs below ERROR."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in NOISY_LIBRARIES]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), _env_defaults(QUIET_ENV):
        for name in NOISY_LIBRARIES:
            warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        for category in (DeprecationWarning, FutureWarning):  # torch's deprecations are raised at their callers
            warnings.filterwarnings("ignore", category=category)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
