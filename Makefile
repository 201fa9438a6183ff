# The README names these targets. Each installs what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# One test process per core (pytest-xdist); PYTEST_ARGS= runs them in one process.
PYTEST_ARGS ?= -n auto --durations=15

.PHONY: install demo test bench check-compose

install:
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev]"

# The whole herald in one process until Ctrl-C; e.g. DEMO_ARGS=--reset starts over.
demo: install
	$(PYTHON) -m herald demo $(DEMO_ARGS)

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: install
	@for script in bench/[a-z]*.py; do echo "== $$script"; $(PYTHON) $$script || exit 1; done

# `docker compose` (the v2 plugin) where it is installed, else the older `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

check-compose:
	$(COMPOSE) -f docker-compose.yml config -q
