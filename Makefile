# Quick start: `make run` (gateway on :1324) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
STANDIN = .build/legacy-standin
STANDIN_SRC = $(shell find tests/legacy -name '*.go' -o -name go.mod -o -name go.sum 2>/dev/null)

# Bytecode caches on for everything make runs, whatever the machine's
# PYTHONDONTWRITEBYTECODE: the test suite starts hundreds of Python processes
# (and the bench dozens), each would recompile the repo. __pycache__ is ignored by git.
export PYTHONDONTWRITEBYTECODE =

.PHONY: install setup system-packages run test test-go test-py test-py-parallel test-py-warm-up test-py-run test-steps test-py-latency test-unit lint browser postgres bench demo standin clean check

install: $(STAMP)

# The packages are installed by uv (https://github.com/astral-sh/uv), from
# PyPI into .build/uv by the machine's pip (or, without one, by a venv's): it
# downloads in parallel and byte-compiles on every core: the whole install
# took 9-17 s in clean-clone runs here, against 20-26 s with pip (a venv with
# pip, its upgrade, pip install and compileall; 2026-12-03). Compiled at
# install, not lazily: the modules the test run's warm-up does not import were
# otherwise compiled by several test processes at once (~15 CPU-s of a fresh
# clone's run, suite_cpu). pip is installed into the venv too:
# `.venv/bin/pip install X` works.
UV_VERSION = 0.13.9
UV = .build/uv/bin/uv
$(UV):
	mkdir -p .build
	if $(PYTHON) -m pip --version >/dev/null 2>&1; then \
	  PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile --target .build/uv uv==$(UV_VERSION); \
	else \
	  $(PYTHON) -m venv .build/uv && .build/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	fi

$(STAMP): pyproject.toml $(UV)
	$(PYTHON) -m venv --without-pip $(VENV)
	$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev]' pip
	touch $@

# The Go stand-in for the legacy backend (tests/legacy). Go's build cache makes
# rebuilds cheap; make only relinks when a source file changed. A cold cache
# compiles the standard library and modernc's SQLite: GOGC=off, no garbage
# collection in the compiler, takes a fifth less CPU for ~1.8 GB at its peak
# (cold builds here: 64-67 CPU-s against 67-85, 2026-12-03).
GO_BUILD_ENV = GOGC=off
standin: $(STANDIN)

$(STANDIN): $(STANDIN_SRC)
	mkdir -p .build
	cd tests/legacy && $(GO_BUILD_ENV) go build -o ../../$(STANDIN) .

# A development session secret unless one is given: Python sign-in mints the
# legacy session cookie with it, so it must equal the Go backend's.
run demo: export JUNJO_SESSION_SECRET ?= dev-secret-change-me

run: install
	@echo "gateway on http://127.0.0.1:1324 -> legacy $${LEGACY_URL:-from routes.yaml}; data in ./data (SQLite, DuckDB)"
	$(BIN)/gateway serve --config routes.yaml

check: install
	$(BIN)/gateway check routes.yaml

# One make run whose prerequisites give the order, so that each part starts
# as soon as what it needs is there: lint and the pytest warm-up once the
# Python packages are in (on a fresh machine the cold Go build, ~40-60 s,
# outlasts the install by far); the parallel run once the warm-up, the
# stand-in and the system packages are, `go test` and whatever is left of
# lint beside it; the latency tests last, alone. Any of them failing fails
# the run.
test:
	@$(MAKE) --no-print-directory -j5 test-steps

test-steps: lint test-go test-py-run
	@$(MAKE) --no-print-directory test-py-latency

# What the tests need, set up side by side: on a fresh machine uv waits on
# the network, `go build` on the CPU (a cold Go cache compiles SQLite) and apt
# on its mirror. The two apt-based targets run one after the other: apt-get
# holds the dpkg lock.
SETUP = install standin system-packages
setup:
	@$(MAKE) --no-print-directory -j3 $(SETUP)

system-packages:
	@$(MAKE) --no-print-directory browser
	@$(MAKE) --no-print-directory postgres

# Style and types: a few seconds, and a red lint fails the run like a test.
# Both tools are pinned in pyproject's dev extra, so a new rule set can't turn CI red.
lint: install
	$(BIN)/ruff check gateway services tests tools
	$(BIN)/mypy

# Headless Chromium for the tests that look at a page (tests/journey): Debian's
# package, installed here (never from pytest) when it is missing. Without its
# recommended packages (avahi, samba's client, CUPS helpers, Perl's LWP, udev:
# 91 of the 115 packages apt installed on this machine's kind, with 15
# upgrades of systemd, perl and more; headless Chromium maps none of them)
# but with the Liberation fonts, which the screenshot tests were written
# against. Playwright's install-deps installs its browsers' libraries the
# same way. Here, on the dev VM: 9.5 s for the whole target, apt-get update
# included, against 50 s for the install alone with the recommends (2026-12-03).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }

# PostgreSQL for the tests that run on a real server: each test run starts a
# throwaway cluster of its own (tests/support/postgres.py: initdb in a temp
# dir, loopback, a free port; as root it runs as the `postgres` user). Only
# the binaries are needed: Debian's package, installed here when missing,
# without the package's own system cluster.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the database tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo 'create_main_cluster = false' | $$SUDO tee /etc/postgresql-common/createcluster.d/no-main-cluster.conf >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# -vet=off: vet type-checks every dependency, modernc's generated SQLite
# among them: 9 of the 14 s `go test` took after a cold build.
test-go: standin
	cd tests/legacy && go test -vet=off ./...

# Six worker processes on two cores: a test often waits on a socket or a child
# process, and six keep both cores busy (measured: ~90 % over the run; four
# and eight workers were no faster). --dist worksteal hands tests out one by one
# and lets an idle worker take queued ones from a busy worker (a module's
# shared gateway is then started once per worker that runs its tests: cheap,
# since tests/support/forkserver.py forks gateways from a process that has
# them imported). Tests that compare a latency with their own baseline, and
# those that time one of the gateway's deadlines, run alone afterwards: on two
# cores shared with six workers a timer can fire over a second late.
PYTEST_ENV = STANDIN_BIN=$(abspath $(STANDIN))

# One after the other, even under make -j: the latency and deadline tests must run alone.
test-py: install standin postgres
	@$(MAKE) --no-print-directory test-py-parallel
	@$(MAKE) --no-print-directory test-py-latency

test-py-parallel: test-py-run

# One process compiles the repo and writes pytest's rewritten test modules
# first, instead of all six workers at once (a quarter of a cold run).
test-py-warm-up: install
	$(BIN)/python -m compileall -q -j 0 gateway services tests tools
	$(PYTEST_ENV) $(BIN)/python -m pytest -q --collect-only -p no:xdist >/dev/null || true  # errors: the run below says

# After the whole setup: the journey tests need Chromium, not only PostgreSQL.
test-py-run: $(SETUP) test-py-warm-up
	$(PYTEST_ENV) $(BIN)/python -m pytest -q -n 6 --dist worksteal -m "not latency and not deadline"

# Only the files that mark a test `latency` or `deadline` are collected (the
# whole suite's collection would take longer than some of these tests).
LATENCY_FILES = $(shell grep -rlE --include='test_*.py' 'mark\.(latency|deadline)' tests)

test-py-latency: install standin postgres
	$(PYTEST_ENV) $(BIN)/python -m pytest -q -m "latency or deadline" $(LATENCY_FILES)

# The unit layer alone: seconds, no processes or sockets but a PostgreSQL server.
test-unit: install postgres
	$(BIN)/python -m pytest -q tests/unit

# Spans for the trace pipeline benchmark (1M takes several minutes; lower it for a quick look).
OTEL_BENCH_SPANS ?= 1000000

# Go's "database is locked" failures while Python shares its SQLite file
# (docs/deploy.md); SQLITE_BENCH_ARGS=--quick for a 30-second look.
SQLITE_BENCH_ARGS ?=

bench: install standin postgres
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m tools.bench.run
	$(BIN)/python -m tools.bench.instructions --targets gateway,floor,ping-app --optional
	$(BIN)/python -m tools.bench.otel_bench --spans $(OTEL_BENCH_SPANS)
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m tools.bench.sqlite_contention $(SQLITE_BENCH_ARGS)
	STANDIN_BIN=$(abspath $(STANDIN)) $(BIN)/python -m tools.bench.replicas

demo: install standin
	$(BIN)/python -m tools.demo

clean:
	rm -rf $(VENV) .build
