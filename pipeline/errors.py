"""Every error type the pipeline raises; the state machine's Retry/Catch match on these names."""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One finding about a manifest, located in its source file."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = self.path or "<document>"
        return f"{self.file}:{self.line}:{self.col}: error: {where}: {self.message}"


class ManifestInvalid(PipelineError):
    """A manifest failed loading or validation; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class JobFailed(PipelineError):
    """A job could not produce its output; the campaign goes on without it."""


class ContentFiltered(JobFailed):
    """The image service refused a request or its output (finish_reasons names a filter)."""


class InputRejected(JobFailed):
    """A job's input breaks a backend's documented limit (size, format, range)."""


class PollLimitExceeded(JobFailed):
    """An asynchronous job (a Luma Ray2 clip on Bedrock) was still running after the bounded number of polls."""


class DependencyFailed(JobFailed):
    """A job was skipped because a job it needs failed."""


class TransientError(PipelineError):
    """A failure worth retrying: throttling, 5xx, an inference hiccup."""


class Throttled(TransientError):
    """The service asked us to slow down."""


class BackendUnavailable(PipelineError):
    """A backend was selected that cannot run here (missing extra, weights, credentials)."""


class OutputFolderRefused(PipelineError):
    """`--out` names a folder the product must not write into (not ours, a file, an unusable name)."""


class AssetChanged(JobFailed):
    """An input asset's bytes differ from the ones its outputs are keyed by (it was edited during the run)."""


class ApprovalUnavailable(PipelineError):
    """`campaign approve` / `reject` found no run waiting for an answer (none, or already answered)."""


class CredentialsUnavailable(PipelineError):
    """No usable signing key for Content Credentials (a certificate or key that cannot be read or do not match)."""


class SigningFailed(JobFailed):
    """A delivered file could not be signed with Content Credentials; it is not published unsigned."""
