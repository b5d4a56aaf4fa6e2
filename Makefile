# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Reuse pip's cache between runs (torch for the HF export tests is large).
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: browser prometheus dashboards k8s k8s-tools k8s-validate venv venv-hf run test test-unit test-kafka bench gpu-pack services services-down lint models test-models clean triton-config

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -U pip wheel
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,triton]'
	touch $@

venv: $(STAMP)

# Hugging Face export path (pulls PyTorch; only the export and its tests need it).
$(VENV)/.installed-hf: $(STAMP)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,triton,hf]'
	touch $@

venv-hf: $(VENV)/.installed-hf

models: venv
	$(VENV)/bin/mtctl models ensure

# Tests use a model store inside the checkout, exported afresh on a clean clone (~5 s).
test-models: venv
	MTB_MODEL_DIR=$(CURDIR)/.models $(VENV)/bin/mtctl models ensure

run: venv models
	$(VENV)/bin/mtctl serve

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m control_plane.inference.triton_config --check
	$(PY) -m k8s.generate --check

# Triton: rewrite model_repository/translator/config.pbtxt (CPU) and configs/gpu.pbtxt
# (GPU: tritonserver --model-config-name=gpu) from control_plane/inference/triton_config.py.
triton-config: venv
	$(PY) -m control_plane.inference.triton_config

# k8s/: the parts generated from k8s/scaling-policy.yaml (KEDA ScaledObjects, per-pool
# Deployments, KafkaTopics) and from dashboards/ (PrometheusRules, dashboard ConfigMaps)
k8s: venv
	$(PY) -m k8s.generate

# Grafana dashboards (dashboards/grafana/*.json) generated from dashboards/build.py
dashboards: venv
	$(PY) -m dashboards.build

# Debian's chromium + chromium-driver for the web page's browser test (apt, as root or
# with sudo); the test skips, naming what is missing, where they cannot be installed
browser: venv
	$(PY) -m devstack.browser ensure || echo "browser: not installed; tests/functional/L0_webui will skip"

# Debian's prometheus (with promtool) for the live dashboard tests and the rule checks (apt,
# as root or with sudo); those tests skip, naming what is missing, where it cannot be had
prometheus: venv
	$(PY) -m devstack install prometheus || echo "prometheus: not installed; tests/functional/L0_dashboards will skip"

# kustomize (Go module proxy) and the operators' CRD schemas (Go proxy, Maven Central),
# built/fetched once into ~/.cache/mt-backend/kube; tests/functional/L0_k8s skips, naming
# what is missing, where they cannot be had
k8s-tools: venv
	$(PY) -m devstack.kube --tools || echo "k8s: tools not available; tests/functional/L0_k8s will skip"

# every overlay of k8s/ built and validated offline (schemas and policy), every finding listed
k8s-validate: venv
	$(PY) -m devstack.kube

test: venv venv-hf test-models browser prometheus k8s-tools
	$(VENV)/bin/ruff check .
	MTB_MODEL_DIR=$(CURDIR)/.models $(PY) -m pytest -ra

test-unit: venv
	$(PY) -m pytest -ra tests/unit

# The Kafka production stack alone: unit tests of the queue, then L0_kafka_* against the
# real PostgreSQL and Kafka (the fixtures start them when `make services` did not).
test-kafka: venv models
	$(PY) -m pytest -ra tests/unit/queue tests/functional/L0_kafka_priorities \
		tests/functional/L0_kafka_ingest tests/functional/L0_kafka_failover \
		tests/functional/L0_kafka_broker_restart tests/functional/L0_kafka_triton

# Real PostgreSQL, Kafka (KRaft) and Triton on loopback ports; state and logs in .services/.
# Settings for shells and tests: set -a; . .services/env; set +a
services: venv
	$(PY) -m devstack up

services-down:
	$(PY) -m devstack down

bench: venv models
	$(PY) -m bench --all

# The GPU check's files for a lent GPU machine (no network there): wheels, model sources,
# split into .p0/ .. .pN/; prints the device calls that run `python -m bench gpu` there
gpu-pack: venv
	$(PY) -m bench.gpu_pack

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
