"""Shared fixtures: the example campaign, small campaigns written into a temporary folder, a webhook receiver."""

from __future__ import annotations

import gc
import os
import re
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one xdist worker per core: a worker's torch (and the processes it starts) then uses one
    # thread, not a pool per core that would contend with the other worker's (set before anything imports torch)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import botocore.loaders
import botocore.session
import pytest

_LOADERS: dict[object, botocore.loaders.Loader] = {}


def _shared_loader(search_paths: object = None) -> botocore.loaders.Loader:
    """One botocore data loader per data path for the whole test process. moto's mock_aws drops boto3's default
    session, so every test's first client built a new session whose new loader parsed the service models,
    endpoints and partitions from JSON again (about a tenth of the cloud modules' CPU: 112 to 101 s). The loader reads only
    botocore's packaged files and caches what it parsed (read-only), so sharing it changes no request."""
    key = tuple(search_paths) if isinstance(search_paths, list) else search_paths
    if key not in _LOADERS:
        _LOADERS[key] = botocore.loaders.create_loader(search_paths)  # type: ignore[arg-type]
    return _LOADERS[key]


botocore.session.create_loader = _shared_loader  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "spring-sofa-launch.yaml"
EXAMPLE_ASSETS = ROOT / "manifests" / "assets"


@pytest.fixture(scope="session", autouse=True)
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's configuration folder (where `campaign run` makes its development signing chain on first use)
    points into this session's temporary folder: no test writes under the real ~/.config. Session-scoped so
    module-scoped fixtures that run a campaign see it too; each xdist worker has its own session."""
    folder = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(folder))
        for name in ("CAMPAIGN_SIGN_CERT", "CAMPAIGN_SIGN_KEY", "CAMPAIGN_SIGNING_KMS_KEY",
                     "CAMPAIGN_SIGNING_CHAIN_PARAMETER"):
            mp.delenv(name, raising=False)
        yield folder


@pytest.fixture(autouse=True)
def fresh_boto3_session() -> Iterator[None]:
    """boto3's default session keeps the credentials and region it first resolved: a module that made a client
    under dummy credentials left them to every later test in that process, so a test of a machine with no AWS
    configuration found credentials or not depending on which modules had run before it. Each test starts with
    none (cheap: the data loader above is shared)."""
    import boto3

    boto3.DEFAULT_SESSION = None
    yield
    boto3.DEFAULT_SESSION = None


@pytest.fixture
def example_manifest() -> Path:
    return EXAMPLE


@pytest.fixture
def write_campaign(tmp_path: Path) -> Callable[[str], Path]:
    """Write a manifest (dedented YAML) next to a copy of the example assets; return its path."""

    def write(text: str, name: str = "campaign.yaml") -> Path:
        assets = tmp_path / "assets"
        if not assets.exists():
            shutil.copytree(EXAMPLE_ASSETS, assets)
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


AWS_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
            "CAMPAIGN_STABILITY_REGION")


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Standard AWS configuration with dummy credentials and no profile, metadata service or endpoint override."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


ARTIFACTS = ROOT / "build" / "test-artifacts"


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run for what a person should be able to look at (the browser tests' screenshots):
    build/test-artifacts/<test name>/, emptied at the test's start. build/ is ignored by git."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder



@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A local HTTP receiver for webhooks (tests/webhook_receiver.py); answers 200 unless the test parametrizes
    it indirectly with a list of statuses."""
    from webhook_receiver import Receiver

    r = Receiver(getattr(request, "param", [200]))
    yield r
    r.close()


# The modules that take longest, longest first (wall seconds under `make test` on the 2-core machine,
# docs/benchmarks.md "The test suite"). `make test` hands whole modules to the two xdist workers in collection
# order (--dist loadscope --no-loadscope-reorder): starting the long ones first leaves only short modules for the
# end, so neither worker waits on the other's last long module. xdist's own reordering (by number of tests)
# started many quick tests first and a 25 s module last. A module not named here keeps its place after these.
LONGEST_FIRST = (
    "test_enhance_smollm.py", "test_static_checks.py", "test_cloud_execution.py", "test_ray2_cloud.py",
    "test_ray2_scale.py", "test_studio_browser.py", "test_container.py", "test_assemble.py",
    "test_container_speed.py", "test_formats.py", "test_container_workers.py", "test_container_writer.py",
    "test_studio_template.py", "test_studio.py", "test_data_merge.py", "test_wan.py", "test_studio_cloud.py",
    "test_run_local.py", "test_ray2_bedrock.py", "test_runner.py", "test_variants_cloud.py",
    "test_gpu_bench_smoke.py", "test_cloud_template.py", "test_studio_operation.py",
)


# Modules that share one expensive thing in the test process run on one xdist worker, as one unit of work, so
# only that worker pays for it: the CDK template modules share the jsii Node kernel and tests/cdk_synth.py's synths
# (the default stack costs about 6 s, and two workers each made it); the torch modules load diffusers' CogVideoX
# and Wan pipelines, transformers' models and torch's compiler, which the other worker then never imports.
SAME_WORKER = {
    "cdk": ("test_cloud_template.py", "test_studio_template.py", "test_cloud_quotas.py", "test_ray2_template.py",
            "test_webhook_template.py", "test_credentials_template.py", "test_cloud_tenants.py"),
    "torch": ("test_enhance_smollm.py", "test_container.py", "test_container_speed.py", "test_container_workers.py",
              "test_container_writer.py", "test_wan.py", "test_gpu_bench_smoke.py", "test_clip_quality.py",
              "test_media_quality.py"),
}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, unknown to a run under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` with SAME_WORKER's modules as one scope each (every other module is its own scope)."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    unit = {name: group for group, names in SAME_WORKER.items() for name in names}

    class SharedScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return unit.get(module.rsplit("/", 1)[-1], module)

    return SharedScopeScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's own order is kept


_frozen_at: Path | None = None  # the module whose first test froze the heap last


def pytest_runtest_setup(item: pytest.Item) -> None:
    """At each new module: collect what the modules before it left, then freeze what survives. A full collection
    walks every tracked object, and a test process that has imported torch, transformers, moto and the CDK holds
    millions of them (those imports and the fixtures of earlier modules): the full collections that
    allocations trigger, and the explicit ones (container/generate.py's release_memory after each model), took
    56 s of the two workers' CPU. Frozen objects are skipped by later collections; nothing a test makes is frozen
    while that test runs, so a test that watches an object die still sees it collected."""
    global _frozen_at
    if item.path == _frozen_at:
        return
    _frozen_at = item.path
    gc.collect()
    gc.freeze()
