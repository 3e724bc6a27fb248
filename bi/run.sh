#!/usr/bin/env bash
# The BI side of dagster-twins: Apache Superset in its own environment (bi/.venv, pinned by bi/requirements.lock),
# reading only the serving copy. `make bi` calls `prepare` then `serve`; the browser test calls them too.
#
#   bi/run.sh install                  # bi/.venv from bi/requirements.lock (skipped when the lock is unchanged)
#   bi/run.sh prepare SERVING_COPY     # Superset's metadata (once), then the dashboards, imported afresh
#   bi/run.sh serve [PORT]             # http://127.0.0.1:PORT (8088 by default), until Ctrl-C
#   bi/run.sh look --screenshots DIR   # every dashboard in headless Chromium on a free port; exit 1 if a chart failed
#
# TWINS_BI_HOME: where Superset keeps its metadata and secret (bi/.superset by default).
set -euo pipefail
BI="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${TWINS_BI_VENV:-$BI/.venv}"
export SUPERSET_CONFIG_PATH="$BI/superset/superset_config.py" FLASK_APP=superset
export TWINS_BI_HOME="${TWINS_BI_HOME:-$BI/.superset}"
export SCARF_ANALYTICS=false DO_NOT_TRACK=1 PYTHONWARNINGS=ignore
ADMIN_USER="${TWINS_BI_USER:-admin}"
ADMIN_PASSWORD="${TWINS_BI_PASSWORD:-admin}"

superset() { "$VENV/bin/superset" "$@" 2> >(grep -v "^WARNING: Location\|Content Security Policy\|fastmcp" >&2); }

case "${1:-}" in
  install)
    if [ ! -x "$VENV/bin/superset" ] || ! cmp -s "$BI/requirements.lock" "$VENV/.installed-lock"; then
      echo "Installing Apache Superset into $VENV (bi/requirements.lock; a few minutes the first time)"
      "${PYTHON:-python3.11}" -m venv "$VENV"
      "$VENV/bin/pip" install --quiet --upgrade pip
      "$VENV/bin/pip" install --quiet --no-deps -r "$BI/requirements.lock"
      "$VENV/bin/pip" check
      cp "$BI/requirements.lock" "$VENV/.installed-lock"
    fi ;;
  prepare)
    serving="${2:?the serving copy, e.g. data/serving/warehouse.duckdb}"
    mkdir -p "$TWINS_BI_HOME"
    if [ ! -f "$TWINS_BI_HOME/.initialized" ]; then
      echo "Setting up Superset's metadata in $TWINS_BI_HOME (once)"
      superset db upgrade >/dev/null
      superset fab create-admin --username "$ADMIN_USER" --firstname dagster --lastname twins \
        --email "$ADMIN_USER@localhost" --password "$ADMIN_PASSWORD" >/dev/null
      superset init >/dev/null
      touch "$TWINS_BI_HOME/.initialized"
    fi
    "$VENV/bin/python" "$BI/superset/dashboards.py" --serving "$serving" --out "$TWINS_BI_HOME/twins_dashboards.zip"
    "$VENV/bin/python" "$BI/superset/load.py" "$TWINS_BI_HOME/twins_dashboards.zip" "$ADMIN_USER" 2>&1 \
      | { grep -i "error\|exception\|traceback" >&2 || true; }
    echo "Dashboards imported; they read $serving" ;;
  serve)
    port="${2:-8088}"
    echo "Superset at http://127.0.0.1:$port/dashboard/list/ (user $ADMIN_USER, password $ADMIN_PASSWORD); Ctrl-C stops it"
    exec "$VENV/bin/superset" run -h 127.0.0.1 -p "$port" --with-threads ;;
  look)
    shift
    exec "$VENV/bin/python" "$BI/superset/look.py" --serve "$BI/run.sh" "$@" ;;
  *)
    sed -n '2,11p' "$0"; exit 2 ;;
esac
