# One entry point: `make local` starts the service on this machine, `make test` runs what CI runs.
SHELL := /bin/bash
PY313 := $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed

.PHONY: local test lint types cfn-lint sam-build unit check-ledger token clean

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

unit: $(STAMP)
	$(PY) -m pytest

test: lint types cfn-lint sam-build unit

check-ledger: $(STAMP)
	$(PY) -m local.check_ledger $(ACCOUNT)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .aws-sam-build.log
