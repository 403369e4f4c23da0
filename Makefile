# Two commands a new user needs: `make run` and `make test`. Each sets itself up from
# uv.lock (exact versions with hashes) and works again on a second run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# uv installs into .venv, never into a venv the caller happens to have activated.
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint bench bench-quick lock clean

$(UV):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r requirements-uv.txt

# --locked: install exactly what uv.lock says, and fail if pyproject.toml has moved on
# without a `make lock`.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --extra dev --python $(BIN)/python --quiet
	@touch $(STAMP)

# `make run FEDERATION=full`: the 43 partners of the full federation instead of the eight.
run: $(STAMP)
	$(BIN)/python scripts/demo.py$(if $(FEDERATION), --federation $(FEDERATION))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The full benchmark (~18-19 min on the 2-core development machine; needs wrk, Redis and
# Node.js 20+ with npm: see bench/README.md); it prepends its results to bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m bench

# A harness check in about two minutes (numbers rough); goes on without node.
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Refresh the lock deliberately: newest versions within pyproject.toml's bounds.
# uv itself is bootstrapped with pip from requirements-uv.txt (hashes taken from the lock).
lock: | $(UV)
	$(UV) lock --upgrade
	{ echo '# uv, the installer of uv.lock: written by `make lock` from uv.lock, do not edit.'; \
	  $(UV) export --frozen --extra dev --no-emit-project --no-header --no-annotate \
	    --format requirements-txt | awk '/^uv==/{p=1;print;next} p&&/^ /{print;next} {p=0}'; \
	} > requirements-uv.txt

clean:
	rm -rf $(VENV) demo-data .mypy_cache .ruff_cache .pytest_cache
