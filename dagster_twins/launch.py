"""Launch a run of ``twins_pipeline`` through the Dagster instance, as the UI does, and wait for it.

``pipeline.run_pipeline`` executes the job in this process (tests, benchmarks): such runs have no code-location
origin, so the UI leaves them off the Overview timeline and warns on "Re-execute". The command line launches
instead: it loads the project's ``workspace.yaml`` (the code location ``dagster dev`` loads), creates the run
against that location's job and hands it to the instance's run launcher, which runs it in a worker process. The
run then is an ordinary run of the code location: on the timeline, re-executable, its logs in the UI.

The code location reads its settings from a file, so the command line's settings (file, environment and
``--set`` flags) are written to one resolved settings file under ``$DAGSTER_HOME/cli-settings/`` that the code
server reads through TWINS_SETTINGS.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from dagster_twins.settings import FILE_KEYS, PROJECT_ROOT, Settings

WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
LOCATION_NAME = "dagster_twins"  # workspace.yaml's location_name
JOB_NAME = "twins_pipeline"
POLL_SECONDS = 1.0


class LocationLoadError(RuntimeError):
    """The code location's definitions failed to load in the code server (the message ends with the cause)."""


def settings_document(settings: Settings) -> dict[str, Any]:
    """``settings`` as a settings file's keys, every path absolute: loading the file gives the same settings."""
    doc: dict[str, Any] = {}
    for key, name in FILE_KEYS.items():
        value = settings.sources if name == "sources" else getattr(settings, name)
        if name == "sources" and value is None:
            value = settings.sources_config
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value.resolve())
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, Mapping):
            value = dict(value)
        doc[key] = value
    return doc


def write_settings_file(settings: Settings, folder: Path) -> Path:
    """The settings as a file named by its content (so two runs with the same settings share one file)."""
    text = yaml.safe_dump(settings_document(settings), sort_keys=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"settings-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yml"
    if not path.exists():
        path.write_text("# Written by `dagster-twins run`: the settings its runs' code location loaded.\n" + text)
    return path


def warehouse_lock(settings: Settings) -> str | None:
    """One line naming the process that holds the warehouse file, or None when a run can take it: checked before
    a run is launched, so a held lock stops the command at once instead of failing the first step."""
    from dagster_twins.warehouse.tables import WarehouseLocked, connect

    if not settings.warehouse_path.exists():
        return None
    try:
        connect(settings.warehouse_path).close()
    except WarehouseLocked as exc:
        return str(WarehouseLocked(settings.warehouse_path, exc.holder, settings.serving_file))
    return None


def innermost_message(error: Any) -> str:
    """A Dagster error's innermost cause, in its first line (what went wrong, not "step failed")."""
    while error is not None and (error.cause or error.context) is not None:
        error = error.cause or error.context
    return error.message.strip().splitlines()[0] if error is not None and error.message.strip() else ""


def failure_cause(event: dg.DagsterEvent) -> str:
    """A failed step's innermost error, in its first line."""
    return innermost_message(getattr(event.event_specific_data, "error", None))


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """These variables set for the code server this process starts (it inherits the environment), then restored."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Dagster's switch (read when a run is created) for one "planned" event per asset with the run's partition range,
# instead of one per asset and landing day: 1,440 events written before a 180-day backfill starts (54 s at 10,000
# users, under load; docs/benchmarks.md). Its cost: the days of a range run that fails are not marked failed in the
# asset's partitions view (the run is); a one-day run keeps its per-day event, so a failed day still shows failed.
PLANNED_EVENTS_AS_RANGE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def planned_events_environment(tags: Mapping[str, str]) -> dict[str, str]:
    """The environment under which a run with these tags is created: a range of landing days plans as a range."""
    from dagster_twins.partitions import RANGE_END_TAG, RANGE_START_TAG

    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return {PLANNED_EVENTS_AS_RANGE: "1"} if start and end and start != end else {}


@dataclass
class LaunchedRun:
    """A finished launched run, read back from the instance: what the CLI prints (the same questions as an
    ``ExecuteInProcessResult`` answers)."""

    run_id: str
    success: bool
    events: list[dg.DagsterEvent]

    @property
    def all_events(self) -> list[dg.DagsterEvent]:
        return self.events

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [e.event_specific_data for e in self.events
                if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for e in self.events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]


def launch_pipeline(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str],
    layers: Sequence[str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    on_launch: Any = None,
) -> LaunchedRun:
    """Create a run of the code location's ``twins_pipeline``, launch
    it through the instance's run launcher and wait until it ends. ``on_launch(run_id)`` is called once launched.
    ``layers`` limits the run to those layers' assets (and their checks)."""
    settings_file = write_settings_file(settings, Path(instance.root_directory) / "cli-settings")
    try:
        return _launch_and_wait(settings_file, instance, tags, layers, run_config, on_launch)
    finally:
        _stop_code_servers()


def _stop_code_servers() -> None:
    """Stop the gRPC code servers this process started. The workspace context leaves its server running after it
    closes; orphaned, it would outlive the command and hold its output open (a caller reading it never sees EOF)."""
    import signal

    me = str(os.getpid())
    servers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] == me and b"grpc" in cmdline and b"api" in cmdline:
            servers.append(int(stat.parent.name))
    for pid in servers:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    for pid in servers:
        for _ in range(50):  # up to 5 s to exit cleanly
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.1)
        else:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _launch_and_wait(settings_file: Path, instance: dg.DagsterInstance, tags: Mapping[str, str],
                     layers: Sequence[str] | None, run_config: Mapping[str, Any] | None,
                     on_launch: Any) -> LaunchedRun:
    from dagster import __version__
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from dagster_twins.layers import layer_of

    with _environment(TWINS_SETTINGS=str(settings_file)), WorkspaceProcessContext(
        instance=instance, version=__version__, read_only=False,
        workspace_load_target=WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]),
    ) as process_context:
        workspace = process_context.create_request_context()
        error = workspace.get_code_location_error(LOCATION_NAME)
        if error is not None:  # the definitions did not load: the cause's last line, not a gRPC traceback
            raise LocationLoadError(f"The code location {LOCATION_NAME} ({WORKSPACE_FILE.name}) did not load: "
                                    f"{innermost_message(error)}")
        location = workspace.get_code_location(LOCATION_NAME)
        (repo,) = location.get_repositories().values()
        keys: Sequence[dg.AssetKey] | None = None
        if layers:
            keys = sorted(key for key in repo.asset_graph.materializable_asset_keys if layer_of(key.path) in layers)
        remote_job = location.get_job(JobSubsetSelector(
            location_name=location.name, repository_name=repo.name, job_name=JOB_NAME, op_selection=None,
            asset_selection=keys))
        config = dict(run_config or {})
        plan = location.get_execution_plan(remote_job, config, step_keys_to_execute=None, known_state=None,
                                           instance=instance).execution_plan_snapshot
        with _environment(**planned_events_environment(tags)):
            run = instance.create_run(
                job_name=JOB_NAME, run_id=None, run_config=config, resolved_op_selection=None,
                step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
                parent_run_id=None, tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
                execution_plan_snapshot=plan, parent_job_snapshot=remote_job.parent_job_snapshot,
                remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
                asset_selection=frozenset(keys) if keys else None, asset_check_selection=None,
                asset_graph=repo.asset_graph)
        # Launched directly, not submitted: a queued run would wait for the daemon, which `dagster dev` runs and
        # the command line does not.
        instance.launch_run(run.run_id, workspace)
        if on_launch is not None:
            on_launch(run.run_id)
        finished = _wait(instance, run.run_id, location.client)
    events = [entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.dagster_event is not None]
    return LaunchedRun(run.run_id, finished.status == dg.DagsterRunStatus.SUCCESS, events)


def _wait(instance: dg.DagsterInstance, run_id: str, client: Any) -> dg.DagsterRun:
    """The run once it has ended. Ctrl-C terminates it; a worker that died without ending it (killed, out of
    memory) is reported as the run's failure instead of being waited for forever."""
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
    from dagster._serdes import deserialize_value

    try:
        while True:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run
            time.sleep(POLL_SECONDS)
            try:
                alive = deserialize_value(client.can_cancel_execution(CanCancelExecutionRequest(run_id=run_id)),
                                          CanCancelExecutionResult).can_cancel
            except DagsterUserCodeUnreachableError:
                # A code server too busy to answer within its 60 s (the run's own work on a loaded machine) says
                # nothing about the run: ask again. Only its answer "not running" ends the wait.
                continue
            run = instance.get_run_by_id(run_id)
            if not alive and run is not None and not run.is_finished:
                instance.report_run_failed(run, "The run worker ended without finishing the run (killed, or out "
                                                "of memory?)")
    except KeyboardInterrupt:
        instance.run_launcher.terminate(run_id)
        raise
