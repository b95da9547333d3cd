# One entry point: `make local` starts the service on this machine, `make test` runs what CI runs.
SHELL := /bin/bash
PY313 := $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# What ships or runs here, all pinned: the dev freeze (which holds the layer's and functions' pins too) and
# each deployed requirements file on its own.
AUDIT_REQUIREMENTS := constraints.txt layers/core/requirements.txt $(wildcard functions/*/requirements.txt)

.PHONY: local test lint types cfn-lint sam-build security unit check-ledger token bench clean

$(STAMP): requirements-dev.txt layers/core/requirements.txt constraints.txt
	@test -n "$(PY313)" || { echo "python3.13 not found (pyenv 3.13.0 expected)"; exit 1; }
	test -x $(PY) || $(PY313) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt \
	    > $(VENV)/pip.log 2>&1 || { tail -40 $(VENV)/pip.log; exit 1; }
	touch $@

# aws-sam-cli pins its own boto3/cfn-lint ranges, so it lives in a venv of its own.
$(SAM_STAMP): requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PY313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-sam.txt \
	    > $(SAM_VENV)/pip.log 2>&1 || { tail -40 $(SAM_VENV)/pip.log; exit 1; }
	touch $@

# checkov and pip-audit pin their own boto3/requests ranges, so the security tools get a venv of their own.
$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PY313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt \
	    > $(CHECKOV_VENV)/pip.log 2>&1 || { tail -40 $(CHECKOV_VENV)/pip.log; exit 1; }
	touch $@

local: $(STAMP)
	$(PY) -m local.run

token: $(STAMP)
	@$(PY) -m local.token $(ACCOUNT) $(SCOPE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy layers/core functions local tests bench

cfn-lint: $(STAMP)
	$(VENV)/bin/cfn-lint --regions us-east-1 -- template.yaml

# sam build with no Docker: python3.13 must be first on PATH for the python3.13 runtime.
sam-build: $(SAM_STAMP)
	PATH="$(dir $(PY313)):$$PATH" PYENV_VERSION=3.13.0 $(SAM_VENV)/bin/sam build --build-dir .aws-sam/build \
	    --cached --parallel > .aws-sam-build.log 2>&1 || { tail -40 .aws-sam-build.log; exit 1; }
	@echo "sam build: ok"

# checkov: zero failed checks; every skip is justified next to its resource in template.yaml.
# pip-audit asks PyPI's per-version JSON API (pypi.org/pypi/<name>/<version>/json) about every pin. A known
# vulnerability always fails (bump the pin, or explain it in docs/security.md and add --ignore-vuln ID to
# AUDIT_IGNORE). Where that API does not answer, packages come back "could not be audited": that is
# reported as NOT AUDITED and fails only with AUDIT_STRICT=1, so an offline CI stays usable but never silent.
AUDIT_IGNORE :=
security: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
	@log=$(CHECKOV_VENV)/pip-audit.log; \
	$(CHECKOV_VENV)/bin/pip-audit $(addprefix -r ,$(AUDIT_REQUIREMENTS)) --no-deps --disable-pip \
	    --progress-spinner off $(AUDIT_IGNORE) > $$log 2>&1; rc=$$?; \
	if grep -q "^Found [0-9]* known vulnerabilit" $$log; then \
	    cat $$log; echo "pip-audit: known vulnerabilities: bump the pin or explain them in docs/security.md"; exit 1; fi; \
	unaudited=$$(grep -c "could not be audited" $$log); \
	if [ $$rc -ne 0 ] || [ $$unaudited -gt 0 ]; then \
	    tail -3 $$log; \
	    echo "pip-audit: NOT AUDITED ($$unaudited packages unanswered, exit $$rc): PyPI's JSON API did not answer"; \
	    [ "$(AUDIT_STRICT)" != 1 ] || exit 1; \
	else echo "pip-audit: no known vulnerabilities"; fi

unit: $(STAMP)
	$(PY) -m pytest

test: lint types cfn-lint sam-build security unit

# Measurements, not tests: prints one table and writes docs/performance.md (ARGS=--quick for a short run).
bench: $(STAMP) sam-build
	$(PY) -m bench $(ARGS)

check-ledger: $(STAMP)
	$(PY) -m local.check_ledger $(ACCOUNT)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .aws-sam-build.log
