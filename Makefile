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
UV_HOME := .tools/uv
UV := $(UV_HOME)/bin/uv
# Every venv uses $(PY313): uv never downloads a Python of its own.
export UV_PYTHON_DOWNLOADS := never
LOCKS := dev sam checkov bootstrap
# What ships or runs here, all pinned: the dev lock (hashed, and holding the layer's and functions' pins too)
# and each deployed requirements file on its own.
AUDIT_DEPLOYED := layers/core/requirements.txt $(wildcard functions/*/requirements.txt)

.PHONY: local test pr lint complexity types cfn-lint sam-build security unit fast-tests other-tests lock \
	check-ledger clock token bench clean swagger-ui screenshots

# uv installs every venv from a hashed lock in seconds (pip took 105 s); pip installs uv itself, hash-checked.
$(UV): requirements/bootstrap.lock
	@test -n "$(PY313)" || { echo "python3.13 not found (pyenv 3.13.0 expected)"; exit 1; }
	rm -rf $(UV_HOME) && mkdir -p .tools
	$(PY313) -m pip install -q --disable-pip-version-check --no-deps --require-hashes --target $(UV_HOME) \
	    -r requirements/bootstrap.lock > .tools/pip.log 2>&1 || { tail -40 .tools/pip.log; exit 1; }
	touch $@

# $(call sync,VENV,LOCK): the venv holds exactly the lock's packages, each checked against its hash.
define sync
	test -x $(1)/bin/python || $(UV) venv -q --python $(PY313) $(1)
	$(UV) pip sync -q --python $(1)/bin/python --require-hashes --strict $(2) \
	    > $(1)/uv.log 2>&1 || { tail -40 $(1)/uv.log; exit 1; }
	touch $(1)/.installed
endef

$(STAMP): requirements/dev.lock | $(UV)
	$(call sync,$(VENV),requirements/dev.lock)

# aws-sam-cli pins its own boto3/cfn-lint ranges, so it lives in a venv of its own.
$(SAM_STAMP): requirements/sam.lock | $(UV)
	$(call sync,$(SAM_VENV),requirements/sam.lock)

# checkov and pip-audit pin their own boto3/requests ranges, so the security tools get a venv of their own.
$(CHECKOV_STAMP): requirements/checkov.lock | $(UV)
	$(call sync,$(CHECKOV_VENV),requirements/checkov.lock)

# After editing requirements/*.in: re-resolve the locks. Versions already locked are kept unless an .in
# changes them (uv prefers the output file's pins), so an unrelated pin never moves by itself.
lock: $(UV)
	for name in $(LOCKS); do \
	    $(UV) pip compile -q --universal --python-version 3.13 --generate-hashes --custom-compile-command "make lock" \
	        requirements/$$name.in -o requirements/$$name.lock || exit 1; \
	done

local: $(STAMP)
	$(PY) -m local.run

# Move the running local mode's clock on (DAYS=31: past the next billing date) and run its schedules at once.
DAYS := 1
clock: $(STAMP)
	@$(PY) -m local.clock $(DAYS)

token: $(STAMP)
	@$(PY) -m local.token "$(ACCOUNT)" "$(SCOPE)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# McCabe complexity (ruff's C901, also part of `lint`) at most 12 per function, the worst of today's code:
# statements.describe and the 32-thread race test (12), LedgerReader.statement (11), send_message (10).
complexity: $(STAMP)
	$(VENV)/bin/ruff check --select C901 .

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
# reported as NOT AUDITED and fails only with AUDIT_STRICT=1, so an offline CI stays usable but never silent;
# any other pip-audit failure (a bad requirements file, a missing hash) always fails.
AUDIT_IGNORE :=
PIP_AUDIT = $(CHECKOV_VENV)/bin/pip-audit --disable-pip --progress-spinner off $(AUDIT_IGNORE)
security: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
	@log=$(CHECKOV_VENV)/pip-audit.log; \
	{ $(PIP_AUDIT) -r requirements/dev.lock --require-hashes; rc=$$?; \
	  $(PIP_AUDIT) $(addprefix -r ,$(AUDIT_DEPLOYED)) --no-deps || rc=$$?; } > $$log 2>&1; \
	if grep -q "^Found [0-9]* known vulnerabilit" $$log; then \
	    cat $$log; echo "pip-audit: known vulnerabilities: bump the pin or explain them in docs/security.md"; exit 1; fi; \
	unaudited=$$(grep -c "could not be audited" $$log); \
	if [ $$rc -ne 0 ] && ! grep -q "requests.exceptions\|could not be audited" $$log; then \
	    tail -20 $$log; echo "pip-audit: failed (exit $$rc)"; exit 1; fi; \
	if [ $$rc -ne 0 ] || [ $$unaudited -gt 0 ]; then \
	    tail -3 $$log; \
	    echo "pip-audit: NOT AUDITED ($$unaudited packages unanswered, exit $$rc): PyPI's JSON API did not answer"; \
	    [ "$(AUDIT_STRICT)" != 1 ] || exit 1; \
	else echo "pip-audit: no known vulnerabilities"; fi

# The in-process tests that are not marked slow, on every core, with a branch-coverage floor of the layer and
# the functions: measured at 91.6% (842 tests), the floor just under it.
COVERAGE_FLOOR := 91
fast-tests: $(STAMP)
	$(PY) -m pytest -m "not blackbox and not browser and not slow" -n auto \
	    --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

# The rest: fuzzing, the stateful ledger, the 32-thread race, refresh at scale, local mode, the dashboard.
other-tests: $(STAMP)
	$(PY) -m pytest -m "blackbox or browser or slow"

unit: fast-tests other-tests

# Before a pull request: the fast gates side by side (each one's output kept together). About 180 s of CPU
# (the tests 150, mypy 15 from a cold cache, cfn-lint 5), so under 2 minutes on 2 idle cores.
pr: $(STAMP)
	$(MAKE) --no-print-directory -j 5 --output-sync=target lint complexity types cfn-lint fast-tests

test: lint types cfn-lint sam-build security unit

# Measurements, not tests: prints one table and writes docs/performance.md (ARGS=--quick for a short run).
bench: $(STAMP) sam-build
	$(PY) -m bench $(ARGS)

# Re-vendor Swagger UI from the npm registry (only when moving to another version): the two files /v1/docs
# serves, gzipped reproducibly, with the package's licence. The sha256 to record are printed.
SWAGGER_UI := 5.35.0
SWAGGER_UI_DIR := layers/core/smscredits/api/static/swagger-ui
swagger-ui:
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack -q swagger-ui-dist@$(SWAGGER_UI) >/dev/null && tar xzf swagger-ui-dist-$(SWAGGER_UI).tgz) && \
	for f in swagger-ui-bundle.js swagger-ui.css; do gzip -9n < $$tmp/package/$$f > $(SWAGGER_UI_DIR)/$$f.gz; \
	    sha256sum $$tmp/package/$$f; done && \
	cp $$tmp/package/LICENSE $$tmp/package/NOTICE $$tmp/package/swagger-ui-bundle.js.LICENSE.txt $(SWAGGER_UI_DIR)/ && \
	rm -rf $$tmp

# The pictures docs/dashboard.md shows: the browser suite (local mode in a subprocess, headless Chromium) writes
# each state to docs/screenshots/, then pngquant (apt-get install pngquant) shrinks them to 256 colours.
screenshots: $(STAMP)
	rm -f docs/screenshots/*.png
	DASHBOARD_SCREENSHOTS=docs/screenshots $(PY) -m pytest -m browser tests/browser -q -p no:cacheprovider
	@if command -v pngquant >/dev/null; then \
	    pngquant --force --skip-if-larger --strip --ext .png 256 docs/screenshots/*.png || true; \
	else echo "pngquant not installed (apt-get install pngquant): the PNGs are left as Chromium wrote them"; fi
	@du -ch docs/screenshots/*.png | tail -1

# STACK=<name>: a deployed stack's table (AWS credentials and region from the environment), else local mode's.
check-ledger: $(STAMP)
	$(PY) -m local.check_ledger $(if $(STACK),--stack $(STACK)) $(ACCOUNT)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .tools .aws-sam .aws-sam-build.log
