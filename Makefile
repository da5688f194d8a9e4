# Quick start: `make run` (gateway on :1324) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
STANDIN = .build/legacy-standin
STANDIN_SRC = $(shell find tests/legacy -name '*.go' -o -name go.mod -o -name go.sum 2>/dev/null)

.PHONY: install run test test-go test-py bench demo standin clean check

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The Go stand-in for the legacy backend (tests/legacy). Go's build cache makes
# rebuilds cheap; make only relinks when a source file changed.
standin: $(STANDIN)

$(STANDIN): $(STANDIN_SRC)
	mkdir -p .build
	cd tests/legacy && go build -o ../../$(STANDIN) .

# A development session secret unless one is given: Python sign-in mints the
# legacy session cookie with it, so it must equal the Go backend's.
run demo: export JUNJO_SESSION_SECRET ?= dev-secret-change-me

run: install
	@echo "gateway on http://127.0.0.1:1324 -> legacy $${LEGACY_URL:-from routes.yaml}; data in ./data (SQLite, DuckDB)"
	$(BIN)/gateway serve --config routes.yaml

check: install
	$(BIN)/gateway check routes.yaml

test: install standin test-go test-py

test-go: standin
	cd tests/legacy && go test ./...

test-py: install standin
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m pytest -q

# Spans for the trace pipeline benchmark (1M takes several minutes; lower it for a quick look).
OTEL_BENCH_SPANS ?= 1000000

# Go's "database is locked" failures while Python shares its SQLite file
# (docs/deploy.md); SQLITE_BENCH_ARGS=--quick for a 30-second look.
SQLITE_BENCH_ARGS ?=

bench: install standin
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m tests.bench.run
	$(BIN)/python -m tests.bench.otel_bench --spans $(OTEL_BENCH_SPANS)
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m tests.bench.sqlite_contention $(SQLITE_BENCH_ARGS)

demo: install standin
	$(BIN)/python -m tests.demo

clean:
	rm -rf $(VENV) .build
