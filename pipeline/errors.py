"""Every error type the pipeline raises; the state machine's Retry/Catch match on these names."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

ECHO_MAX = 200  # characters of a value a user wrote that an error may echo
MESSAGE_MAX = 1000  # characters of one problem's message, whatever it echoes
_LONG_RUN = re.compile(rf"\S{{{ECHO_MAX + 1},}}")


def shown(value: object) -> str:
    """repr() of a value a user wrote, cut to about ECHO_MAX characters: a 100,000-character name must not give a
    100 KB error (or report, or log line)."""
    text = repr(value)
    if len(text) <= ECHO_MAX:
        return text
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else f"{len(text)} characters as written"
    return f"{text[:ECHO_MAX]}... ({size})"


def clip_echoes(text: str) -> str:
    """`text` with every run of more than ECHO_MAX non-blank characters cut (an echoed value, wherever it came
    from: our messages, jsonschema's, YAML's), and the whole kept under MESSAGE_MAX characters."""
    if len(text) <= ECHO_MAX:
        return text
    text = _LONG_RUN.sub(lambda m: f"{m.group()[:ECHO_MAX]}...({len(m.group())} characters)", text)
    return text if len(text) <= MESSAGE_MAX else f"{text[:MESSAGE_MAX]}... ({len(text)} characters in all)"


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

    def __post_init__(self) -> None:
        # the one place every manifest problem passes: no echoed value makes it longer than MESSAGE_MAX
        for name in ("file", "path", "message"):
            object.__setattr__(self, name, clip_echoes(getattr(self, name)))

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


class SubmitRefused(PipelineError):
    """`campaign submit` would replace a manifest someone else wrote (or the key changed while it wrote)."""


class ApprovalUnavailable(PipelineError):
    """`campaign approve` / `reject` found no run waiting for an answer (none, or already answered)."""


class CredentialsUnavailable(PipelineError):
    """No usable signing key for Content Credentials (a certificate or key that cannot be read or do not match)."""


class SigningFailed(JobFailed):
    """A delivered file could not be signed with Content Credentials; it is not published unsigned."""


# --- the user's setup, said plainly -------------------------------------------------------------------------
# An optional package -> the install extra that brings it (pyproject.toml's [project.optional-dependencies]).
EXTRA_OF_MODULE = {"torch": "gpu", "diffusers": "gpu", "transformers": "gpu", "accelerate": "gpu",
                   "huggingface_hub": "gpu", "torchao": "gpu", "gguf": "llm", "aws_cdk": "cloud", "constructs": "cloud",
                   "cdk_nag": "cloud"}
# ClientError codes that mean "these credentials are not accepted" rather than "this request failed".
REJECTED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                                       "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                       "AuthFailure", "RequestExpired", "InvalidSignatureException"})
CREDENTIALS_HINT = ("configure AWS credentials: `aws configure` (or `aws sso login`), AWS_PROFILE, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
REGION_HINT = "set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your AWS profile"


@dataclass(frozen=True)
class SetupProblem:
    """Why a command could not run on this machine, and what to do: `kind` is credentials, region or extra."""

    kind: str
    message: str


def setup_problem(exc: BaseException) -> SetupProblem | None:
    """The setup problem behind `exc` or any exception it was raised from (missing AWS credentials or region,
    credentials AWS refused, an optional extra not installed); None when it is something else."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        found = _one_setup_problem(e)
        if found:
            return found
        e = e.__cause__  # `raise ... from`, not an unrelated error met while handling another
    return None


def _one_setup_problem(e: BaseException) -> SetupProblem | None:
    name = type(e).__name__
    module = type(e).__module__ or ""
    if module.startswith("botocore"):  # by name: botocore is always installed, but errors.py imports nothing
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "ProfileNotFound",
                    "SSOTokenLoadError", "TokenRetrievalError", "UnauthorizedSSOTokenError"):
            return SetupProblem("credentials", f"no usable AWS credentials ({e}); {CREDENTIALS_HINT}")
        if name == "NoRegionError":
            return SetupProblem("region", f"no AWS region configured; {REGION_HINT}")
        if name == "ClientError":
            error = getattr(e, "response", {}).get("Error", {})
            if error.get("Code") in REJECTED_CREDENTIAL_CODES:
                return SetupProblem("credentials", f"AWS refused the credentials ({error.get('Code')}: "
                                    f"{error.get('Message', '')}); {CREDENTIALS_HINT}")
    if isinstance(e, ModuleNotFoundError) and e.name:
        top = e.name.split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        if extra:
            return SetupProblem("extra", f"this needs the '{extra}' extra ({top} is not installed): "
                                f"pip install -e '.[{extra}]' (README: Which install each feature needs)")
    return None


OS_HINTS = {
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.EACCES: "permission denied; check the folder's permissions or choose another --out",
    errno.EPERM: "permission denied; check the folder's permissions or choose another --out",
    errno.ENOSPC: "no space left on the device; free some space (finished outputs are kept) and run again",
    errno.EDQUOT: "disk quota exceeded; free some space and run again",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "this is a folder, where a file was expected",
}


def os_problem(exc: OSError) -> str:
    """An OSError from the user's environment (read-only folder, full disk) in words, with its path."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = OS_HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{where}{hint}"


class ReviewRefused(PipelineError):
    """`campaign review` / `export` cannot do what was asked (no such run or item, a value the item cannot take,
    a file in the way that it did not write)."""
