# dagster-twins: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1

USERS ?= 2000
DAYS  ?= 180

.PHONY: setup demo run dev test lint bench bench-simulation model-quality clean

$(BIN)/dagster-twins: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The dbt manifest must exist before Dagster loads the definitions.
dbt/target/manifest.json: $(BIN)/dagster-twins $(shell find dbt -name '*.sql' -o -name '*.yml' -o -name '*.csv' 2>/dev/null | grep -v target)
	cd dbt && ../$(BIN)/dbt parse --quiet --profiles-dir .

setup: $(BIN)/dagster-twins dbt/target/manifest.json  ## install everything pinned in requirements.lock

demo: setup  ## generate demo data and run the whole pipeline on it
	$(BIN)/dagster-twins demo --users $(USERS) --days $(DAYS)

run: setup  ## run the pipeline on whatever is in the landing folder (your own files)
	$(BIN)/dagster-twins run

dev: setup  ## the Dagster UI at http://127.0.0.1:3000
	$(BIN)/dagster dev

test: setup  ## the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup  ## stage timings and peak memory at 10k and 100k users (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --users 10000 100000 --days 180 --repeat 3 --output docs/benchmarks.json

bench-simulation: setup  ## one scenario over 100k active users x 1,000 draws (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --simulation --users 100000 --days 180 --draws 1000 --repeat 5 --output docs/benchmarks-simulation.json

model-quality: setup  ## score the twins against the demo's planted truth (docs/model-quality.md)
	$(BIN)/dagster-twins model-quality --users 10000 --days 180 --output docs/model-quality.md

clean:
	rm -rf data dbt/target dbt/logs
