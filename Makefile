# dagster-twins: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1

USERS ?= 2000
DAYS  ?= 180

.PHONY: setup setup-spark browser bi bi-setup bi-screenshots demo run dev docs source-freshness ui-screenshots test test-spark lint bench bench-1m bench-spark bench-simulation bench-churn bench-api bench-purchases bench-uplift bench-daily uplift-quality model-quality purchases-quality dq-screenshot clean

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

# The optional Spark group (dbt-spark, pyspark; Java 17 needed to run it): TWINS_DBT_TARGET=spark, and the tests.
$(VENV)/.spark-installed: requirements-spark.lock $(BIN)/dagster-twins
	$(BIN)/pip install --quiet -r requirements-spark.lock
	touch $@

setup-spark: setup $(VENV)/.spark-installed  ## also install the Spark engine pinned in requirements-spark.lock
# demo, run and dev install it too when the pipeline runs dbt on Spark (TWINS_DBT_TARGET=spark make demo).
ENGINE_SETUP := $(if $(filter spark%,$(TWINS_DBT_TARGET)),setup-spark)

demo: setup $(ENGINE_SETUP)  ## generate demo data and run the whole pipeline on it
	$(BIN)/dagster-twins demo --users $(USERS) --days $(DAYS)

run: setup $(ENGINE_SETUP)  ## run the pipeline on whatever is in the landing folder (your own files)
	$(BIN)/dagster-twins run

dev: setup $(ENGINE_SETUP)  ## the Dagster UI at http://127.0.0.1:3000
	$(BIN)/dagster dev

# dbt's documentation site, offline (one self-contained page): models, columns with their types from the warehouse's
# catalog, tests and lineage. Reads data/warehouse.duckdb, so run it after `make demo` and while no run is running.
docs: setup  ## dbt's documentation site: dbt/target/static_index.html (open it in a browser; no server, no network)
	cd dbt && TWINS_WAREHOUSE=$${TWINS_WAREHOUSE:-$(CURDIR)/data/warehouse.duckdb} ../$(BIN)/dbt docs generate --static \
	  --profiles-dir . --quiet
	@echo "dbt docs: file://$(CURDIR)/dbt/target/static_index.html"

# dbt's own source freshness (the `freshness:` rules on the raw sources, by `_loaded_at`); Dagster does not run or show
# it (its freshness checks watch the marts and twins). Same warehouse rule as `make docs`: no run may be going on.
source-freshness: setup  ## dbt source freshness of the raw tables: warn after 2 days, error after 7
	cd dbt && TWINS_WAREHOUSE=$${TWINS_WAREHOUSE:-$(CURDIR)/data/warehouse.duckdb} ../$(BIN)/dbt source freshness \
	  --profiles-dir .

# The Dagster UI's screenshots in docs/img, from the browser tests (a small demo, its CLI run, a dagster-webserver).
ui-screenshots: setup browser  ## docs/img/ui_*.png: the timeline, a plot, raw partitions, the expanded lineage
	TWINS_SCREENSHOTS=$(CURDIR)/docs/img $(BIN)/python -m pytest -q tests/test_operator_ui.py

# Chromium renders the data-quality report in its browser test (Debian's package; root or sudo).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# BI: Apache Superset in its own environment bi/.venv (bi/requirements.lock), reading only the serving copy (docs/bi.md).
BI_PORT ?= 8088
SERVING = $$($(BIN)/python -c 'from dagster_twins.settings import Settings; print(Settings.load().serving_file)')

bi-setup:  ## install Apache Superset into bi/.venv from bi/requirements.lock (never touches the pipeline's pins)
	bi/run.sh install

bi: setup bi-setup  ## the dashboards over the serving copy at http://127.0.0.1:$(BI_PORT) (run `make demo` first)
	bi/run.sh prepare "$(SERVING)"
	bi/run.sh serve $(BI_PORT)

bi-screenshots: setup bi-setup browser  ## docs/img/bi-*.png from the current serving copy (Superset on a free port)
	bi/run.sh prepare "$(SERVING)"
	bi/run.sh look --screenshots docs/img

test: lint setup-spark browser bi-setup  ## lint, then the whole test suite (Spark parity and the BI browser test included)
	$(BIN)/python -m pytest

test-spark: setup-spark  ## the Spark tests alone: dbt and the Python layers on a local standalone cluster against DuckDB
	$(BIN)/python -m pytest -m spark

# Both offline and deterministic: sqlfluff renders the models with its jinja templater (no dbt, no warehouse).
lint: setup  ## ruff over the Python, sqlfluff over the dbt models (.sqlfluff; pre-commit runs the same)
	$(BIN)/ruff check .
	$(BIN)/sqlfluff lint dbt/models

bench: setup  ## stage timings and peak memory at 10k and 100k users (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --users 10000 100000 --days 180 --repeat 3 --output docs/benchmarks.json

# The daily run as users meet it (a full build, then 3 more landing days end to end, split by stage) at 90 and 180 days
# of history, beside the by-hand DuckDB floor (dagster_twins/tools/floor.py) on the same landing files.
bench-daily: setup  ## daily run, ingest to serving, at 100k users x 90 and 180 days, and the floor (docs/benchmarks.md)
	$(BIN)/dagster-twins bench --daily --floor --users 100000 --history-days 90 180 --repeat 3 --chunk-users 25000 \
		--output docs/benchmarks-daily.json

# DuckDB may use 8 GB at this size (3 GB by default, for the spine's 4 GB target at 100,000 users); the work folder
# is kept so a stopped run can go on: add RESUME="--resume <folder> --from-stage <stage>".
bench-1m: setup  ## the whole DuckDB pipeline at 1,000,000 users x 180 days, once (see docs/benchmarks.md; hours here)
	TWINS_DUCKDB_MEMORY_LIMIT=8GB $(BIN)/dagster-twins bench --users 1000000 --days 180 --repeat 1 --keep $(RESUME) \
		--output docs/benchmarks-1m.json

bench-spark: setup setup-spark  ## the same stages with dbt on local Spark beside DuckDB, at 2,000 users
	$(BIN)/dagster-twins bench --engine spark --users 2000 --days 180 --repeat 1 --output docs/benchmarks-spark.json
	$(BIN)/dagster-twins bench --engine duckdb --users 2000 --days 180 --repeat 1 --output docs/benchmarks-spark-duckdb.json

bench-api: setup  ## the twin API at 1,000,000 users (documents cloned from a built demo into a read store; docs/twin-api.md)
	$(BIN)/dagster-twins bench --api --users 1000000 --rate 500 --seconds 30 --observe-rate 50 --repeat 3 --output docs/benchmarks-api.json

bench-simulation: setup  ## one scenario over 100k active users x 1,000 draws (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --simulation --users 100000 --days 180 --draws 1000 --repeat 5 --output docs/benchmarks-simulation.json

bench-churn: setup  ## the churn layer's landmark frame, fit and scoring at 100k users (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --churn --users 100000 --days 180 --repeat 3 --output docs/benchmarks-churn.json

bench-purchases: setup  ## the purchase model's fit and scoring at 100k and 1M users (see docs/benchmarks.md)
	$(BIN)/dagster-twins bench --purchases --users 100000 1000000 --repeat 3 --output docs/benchmarks.md

purchases-quality: setup  ## purchases and value on CDNOW beside BG/NBD and Pareto/NBD, and on a demo (docs/model-quality.md)
	$(BIN)/dagster-twins purchases-quality --users 2000 --days 180 --output docs/model-quality.md

bench-uplift: setup  ## per-user campaign effects: cross-fitted fit, scoring (100k and 1M) and Qini curves (docs/benchmarks.md)
	$(BIN)/dagster-twins bench --uplift --users 100000 --repeat 3 --output docs/benchmarks-uplift.json

uplift-quality: setup  ## per-user campaign effects against the demo's planted truth (a section of docs/model-quality.md)
	$(BIN)/dagster-twins uplift-quality --users 20000 --days 180 --output docs/model-quality.md

model-quality: setup  ## score the twins against the demo's planted truth (docs/model-quality.md)
	$(BIN)/dagster-twins model-quality --users 10000 --days 180 --output docs/model-quality.md

dq-screenshot: browser  ## docs/dq_report.png from the last run's report (run `make demo` first)
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
	  --user-data-dir=$$(mktemp -d) --window-size=1200,1500 --screenshot=docs/dq_report.png \
	  file://$(CURDIR)/data/reports/dq_report.html

clean:
	rm -rf data dbt/target dbt/logs
