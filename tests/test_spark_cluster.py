"""The local standalone cluster's process handling, without Spark: a daemon that dies before it is ready is
reported with its log, and stopping kills each daemon's whole process group (a worker's executors with it)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from dagster_twins.warehouse.spark_cluster import ClusterError, _stop, _wait_ready, free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_daemon_that_exits_before_it_is_ready_is_reported_with_its_log(tmp_path):
    log = tmp_path / "worker-1.log"
    log.write_text("starting\nERROR Worker: Failed to connect to master\n")
    proc = subprocess.Popen(["sh", "-c", "exit 3"], start_new_session=True)
    proc.wait()
    with pytest.raises(ClusterError, match=r"worker-1 exited with code 3(.|\n)*Failed to connect to master"):
        _wait_ready([(proc, log)], "Successfully registered with master", time.monotonic() + 600)


def test_a_ready_daemon_passes_and_stopping_kills_its_children_too(tmp_path):
    log = tmp_path / "master.log"
    pid_file = tmp_path / "child.pid"
    # A "daemon" that starts a child of its own (as a worker starts executors), then says it is ready.
    proc = subprocess.Popen(["sh", "-c", f"sleep 600 & echo $! > {pid_file}; echo 'I have been elected leader' "
                                         f"> {log}; wait"], start_new_session=True)
    _wait_ready([(proc, log)], "I have been elected leader", time.monotonic() + 600)
    child = int(pid_file.read_text())
    assert _alive(child)
    _stop([proc])
    assert proc.returncode is not None and not _alive(child)


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_warehouse_dir_spark_rewrote_as_a_file_uri_is_the_same_warehouse():
    from dagster_twins.warehouse.spark import same_static_value

    assert same_static_value("file:/tmp/spark/warehouse", "/tmp/spark/warehouse")
    assert same_static_value("file:///tmp/spark/warehouse/", "/tmp/spark/warehouse")
    assert same_static_value("spark://127.0.0.1:7077", "spark://127.0.0.1:7077")
    assert not same_static_value("file:/tmp/other", "/tmp/spark/warehouse")
    assert not same_static_value(None, "local[2]")


def test_workers_by_app_reads_the_workers_logs_and_a_replaced_executor_adds_no_worker(tmp_path):
    from dagster_twins.warehouse.spark_cluster import LocalCluster

    launch = "26/12/01 03:03:20 INFO Worker: Asked to launch executor {}/{} for dagster-twins\n"
    (tmp_path / "worker-1.log").write_text(launch.format("app-1-0000", 0) + launch.format("app-1-0001", 0)
                                           + launch.format("app-1-0001", 3))  # 0 lost, 3 its replacement
    (tmp_path / "worker-2.log").write_text(launch.format("app-1-0000", 1))
    cluster = LocalCluster("spark://127.0.0.1:1", tmp_path)
    assert cluster.workers_by_app() == {"app-1-0000": {"worker-1", "worker-2"}, "app-1-0001": {"worker-1"}}
