"""The command line's wait for a launched run judges the run worker by its process: running, exited (a zombie not
yet reaped by its parent) or gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dagster_twins.launch import process_alive


def test_a_running_process_is_alive_and_an_exited_one_is_not_reaped_or_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        child.kill()
        # Exited but not reaped (waitpid not called yet): a zombie, which the wait must read as ended.
        for _ in range(200):
            if not process_alive(child.pid):
                break
            time.sleep(0.05)
        assert not process_alive(child.pid)
        assert os.waitpid(child.pid, os.WNOHANG)[0] == child.pid  # it was a zombie, reaped only now
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)


def test_this_process_is_alive():
    assert process_alive(os.getpid())
