"""The code location loads, shows every layer, and `dagster dev` serves it from the project root."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dagster_twins.settings import PROJECT_ROOT


def test_definitions_load_with_every_layer():
    from dagster_twins.definitions import defs

    repo = defs.get_repository_def()
    groups = {node.group_name for node in repo.asset_graph.asset_nodes}
    assert {"ingestion", "staging", "intermediate", "marts", "reference", "twins", "churn", "simulation"} <= groups
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    expected = {"raw/events", "raw/quarantine", "marts/fct_events", "marts/fct_user_daily_features",
                "twins/user_beliefs", "twins/user_twins", "churn/churn_model_metrics", "churn/churn_predictions",
                "simulation/campaign_effects", "simulation/scenario_retention_campaign_top_risk_decile",
                "simulation/scenario_policy_ranking"}
    assert expected <= keys
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert {"rows_reconcile", "every_user_has_a_twin", "backtest_beats_naive_rankers",
            "placebo_covers_zero"} <= checks
    assert any(name.startswith(("unique_", "not_null_")) for name in checks)  # dbt tests as asset checks
    assert defs.resolve_job_def("twins_pipeline") is not None
    assert {s.name for s in repo.schedule_defs} == {"twins_daily"}
    assert {s.name for s in repo.sensor_defs} == {"new_landing_files", "freshness_checks", "source_freshness"}
    assert "freshness_check" in checks  # evaluated by its sensor, left out of the pipeline's own runs
    assert "source_freshness" in checks  # the raw tables, as dbt's source freshness rules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


WORKSPACE_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName } }"


def test_dagster_dev_serves_the_code_location_from_workspace_yaml(tmp_path: Path):
    """Start `dagster dev` as a user would (from the project root), ask its GraphQL API what loaded."""
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "DAGSTER_DISABLE_TELEMETRY": "1"}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "--port", str(port), "--host", "127.0.0.1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the webserver and code server stop with it
    )
    try:
        entries = None
        for _ in range(180):  # wait for the webserver and the code location; no timing is asserted
            time.sleep(1)
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}")
            try:
                entries = _graphql(port, WORKSPACE_QUERY)["data"]["workspaceOrError"]["locationEntries"]
            except OSError:
                continue
            if entries and entries[0]["locationOrLoadError"] is not None:
                break
        assert entries, "dagster dev never answered"
        assert [e["name"] for e in entries] == ["dagster_twins"]
        location = entries[0]["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location.get("message")
        nodes = _graphql(port, ASSETS_QUERY)["data"]["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw/events", "marts/fct_events", "marts/fct_user_churn_survival", "twins/user_twins",
                "churn/churn_predictions", "simulation/scenario_policy_ranking"} <= keys
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
