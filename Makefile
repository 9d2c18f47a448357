# Two commands a newcomer needs: `make demo` (a local federation) and `make test`.
# Both create .venv and install the project into it when missing or when pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint bench clean browser deploy-tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m federation.cli.demo

# The browser tests drive Debian's chromium through Playwright (executable_path); nothing is downloaded.
browser: $(CHROMIUM)
$(CHROMIUM):
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	$$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# Optional: systemd-analyze and shellcheck for tests/deploy/, from Debian (no daemon is started). The
# proxy checks also run `nginx -t` and `caddy validate` where nginx and caddy are installed; their
# packages start services, so installing them is left to the operator of the machine.
deploy-tools:
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	$$SUDO apt-get install -y -q --no-install-recommends systemd shellcheck >/dev/null 2>&1 || \
	{ $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends systemd shellcheck; }

# Tests run in parallel, one worker per core (pytest-xdist); an idle worker takes tests queued for the other
# (worksteal), so one long end-to-end file does not hold the run. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check federation node schemas tests
	$(BIN)/mypy federation node

# The benchmark suite (docs/BENCHMARKS.md), not part of `make test`: e.g. `make bench BENCH_ARGS="--quick ingest"`.
# Results also go to bench-results.json (render: .venv/bin/python -m tests.bench.report bench-results.json).
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m tests.bench --json bench-results.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
