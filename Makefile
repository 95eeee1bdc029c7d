# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_PACKAGES := prometheus bird nftables iproute2 procps openssl buildah debootstrap
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint typecheck imports pytest deb-deps image bench bench-quick proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/calico-exporter demo --listen "$${CALICO_EXPORTER_LISTEN:-127.0.0.1:9808}"

# Debian packages the tests drive for real: promtool and the Prometheus server,
# BIRD 1.6.8, nftables and iproute2 for network namespaces, buildah and debootstrap for the
# image (built and run by the tests). Installed only when missing.
deb-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages (run as root to install):$$missing"; fi; \
	fi
	@$(BIN)/python tools/install_helm.py

# The container image calico-exporter:<version>, with buildah or docker (IMAGE_TOOL=...), from
# wheels made on the host first. BASE_IMAGE=<image> replaces the public python:3.11-slim base
# (the tests use a local Debian 12 one: `python tools/image.py base`).
image: $(STAMP)
	$(BIN)/python tools/image.py build $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) \
	  $(if $(IMAGE_TOOL),--tool $(IMAGE_TOOL)) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

lint: $(STAMP)
	$(BIN)/ruff check exporter tests bench tools grafana deploy

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) deb-deps
	$(BIN)/pytest

test: $(STAMP) deb-deps lint typecheck imports pytest

bench-quick: $(STAMP)
	$(BIN)/python -m bench.harness --quick

bench: $(STAMP)
	$(BIN)/python -m bench.harness --full --write-doc docs/performance.md

# Regenerate exporter/goldmane/api_pb2*.py{,i} from api.proto (committed; a test checks them).
proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
