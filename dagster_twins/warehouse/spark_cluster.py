"""A Spark standalone cluster on this machine: one master and a few workers on 127.0.0.1, started from the pinned
pyspark's own launcher (``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker``), for the
tests and for trying the cluster path before a real one. Point the project at it with ``spark_master`` (Settings,
``TWINS_SPARK_MASTER``)::

    from dagster_twins.warehouse.spark_cluster import standalone_cluster

    with standalone_cluster(Path("/tmp/cluster"), workers=2) as cluster:   # spark://127.0.0.1:<port>
        settings = settings.with_overrides(dbt_target="spark", spark_master=cluster.master_url)
        ...

The driver (dbt's process, or the Python assets') runs where it is started and the executors in the workers'
JVMs; both read and write the Spark folder (``spark_dir``: tables, raw lake) by its local path, which works only
because every process is on this machine. On a real cluster that folder must be shared storage (HDFS, S3, ABFS).

Each daemon runs in a process group of its own, and the workers' executors are their children: leaving the
context kills every group, so nothing outlives it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# What each daemon writes to its log once it can take work.
MASTER_READY = "I have been elected leader"
WORKER_READY = "Successfully registered with master"


class ClusterError(RuntimeError):
    """A daemon of the local cluster exited or never became ready; the message carries its log's tail."""


@dataclass(frozen=True)
class LocalCluster:
    master_url: str  # spark://127.0.0.1:<port>
    workdir: Path  # the daemons' logs (master.log, worker-<n>.log) and work/, the executors' folders

    def executors(self) -> dict[str, list[str]]:
        """The executors the workers launched so far, by application id (``app-<time>-<n>``): proof that an
        application ran on the cluster, not in its driver's JVM."""
        work = self.workdir / "work"
        return {app.name: sorted(e.name for e in app.iterdir()) for app in sorted(work.glob("app-*"))}

    def workers_by_app(self) -> dict[str, set[str]]:
        """The workers (``worker-<n>``) that launched an executor of each application, from their logs. An
        executor lost and replaced (a worker that missed its heartbeats) adds no worker."""
        out: dict[str, set[str]] = {}
        for log in sorted(self.workdir.glob("worker-*.log")):
            for app in re.findall(r"Asked to launch executor (app-[\w-]+)/\d+", log.read_text(errors="replace")):
                out.setdefault(app, set()).add(log.stem)
        return out


def spark_class() -> Path:
    """The ``spark-class`` launcher of the installed pyspark."""
    try:
        import pyspark
    except ImportError as exc:
        raise ImportError("pyspark is not installed: pip install -r requirements-spark.lock") from exc
    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("w") as sink:  # the child keeps its own descriptor
        return subprocess.Popen([str(spark_class()), *args], stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _wait_ready(processes: list[tuple[subprocess.Popen, Path]], marker: str, deadline: float) -> None:
    """Waits until every log shows ``marker``; raises with the log of a daemon that exited or is late."""
    pending = list(processes)
    while pending:
        for proc, log in list(pending):
            if marker in (log.read_text(errors="replace") if log.exists() else ""):
                pending.remove((proc, log))
            elif proc.poll() is not None:
                raise ClusterError(f"{log.stem} exited with code {proc.returncode} before it was ready:\n{_tail(log)}")
        if pending and time.monotonic() > deadline:
            proc, log = pending[0]
            raise ClusterError(f"{log.stem} not ready (no {marker!r} in {log}):\n{_tail(log)}")
        if pending:
            time.sleep(0.5)


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, exited but not yet reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[-1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _stop(processes: list[subprocess.Popen], settle_seconds: float = 30) -> None:
    """Workers first (their executors with them), then the master: SIGTERM to each group, SIGKILL if it lingers.
    Returns once no process of the groups runs (a killed executor can take a moment to go), or after
    ``settle_seconds`` more."""
    for proc in reversed(processes):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in reversed(processes):
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: executors a worker left behind too
        proc.wait()
    deadline = time.monotonic() + settle_seconds
    while any(_group_running(proc.pid) for proc in processes) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextmanager
def standalone_cluster(workdir: Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                       startup_seconds: float = 600, daemon_memory: str = "256m",
                       worker_timeout_seconds: int = 600) -> Iterator[LocalCluster]:
    """A master and ``workers`` workers (``cores`` cores and ``memory`` each) on 127.0.0.1, their logs and work
    folders under ``workdir``; yields the cluster (its master URL, ``spark://127.0.0.1:<port>``) once every worker
    has registered, and stops them all on exit. ``daemon_memory`` is each daemon's own heap; a worker missing its
    heartbeats for ``worker_timeout_seconds`` is dropped by the master. ``startup_seconds`` bounds only the wait
    for a daemon that neither comes up nor exits (a loaded machine takes tens of seconds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(workdir / "logs"),
           "SPARK_WORKER_DIR": str(workdir / "work"), "SPARK_NO_DAEMONIZE": "1",
           # The daemons themselves are small (the executors get ``memory``); their default heap is 1 GB each.
           "SPARK_DAEMON_MEMORY": daemon_memory,
           # On a machine this loaded (tests beside other work) the master once heard no worker heartbeat for 60 s,
           # Spark's default, dropped both workers and relaunched every executor of the running build.
           "SPARK_MASTER_OPTS": f"-Dspark.worker.timeout={worker_timeout_seconds}"}
    # The daemons have no use for the web UIs; they still need ports, so free ones rather than 8080/8081.
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    started: list[subprocess.Popen] = []
    deadline = time.monotonic() + startup_seconds
    try:
        log = workdir / "master.log"
        started.append(_start([MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                                "--webui-port", str(free_port())], log, env))
        _wait_ready([(started[0], log)], MASTER_READY, deadline)
        pending = []
        for i in range(workers):
            log = workdir / f"worker-{i + 1}.log"
            started.append(_start([WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                                   "--webui-port", str(free_port()), "--work-dir", str(workdir / "work"),
                                   master_url], log, env))
            pending.append((started[-1], log))
        _wait_ready(pending, WORKER_READY, deadline)
        yield LocalCluster(master_url, workdir)
    finally:
        _stop(started)
