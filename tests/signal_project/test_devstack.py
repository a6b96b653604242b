"""`make run` supervises its processes: one that exits is started again, and it says so."""

from __future__ import annotations

import sys
import time

from signal_project.devstack import Child


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_child_that_exits_is_started_again_and_the_output_says_so(capsys, tmp_path):
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)"
    child = Child("worker", [sys.executable, "-c", script], env={})
    child.start()

    def restarted_twice() -> bool:
        child.check()
        return child.restarts >= 2

    wait_until(restarted_twice, timeout=15)
    wait_until(lambda: runs.exists() and len(runs.read_text()) >= 3)
    out = capsys.readouterr().out
    assert "[make run] worker exited with code 3" in out
    assert "[make run] restarting worker (restart 1)" in out
    assert "[make run] restarting worker (restart 2)" in out


def test_a_child_that_keeps_exiting_waits_longer_each_time():
    child = Child("web", [sys.executable, "-c", "raise SystemExit(1)"], env={})
    child.start()
    pauses: list[float] = []
    deadline = time.monotonic() + 20
    while len(pauses) < 3 and time.monotonic() < deadline:
        child.check()
        if child.restart_at is not None and (not pauses or child.pause != pauses[-1]):
            pauses.append(child.pause)
        time.sleep(0.05)
    assert pauses == [1.0, 2.0, 4.0]


def test_a_running_child_is_left_alone():
    child = Child("beat", [sys.executable, "-c", "import time; time.sleep(30)"], env={})
    child.start()
    try:
        child.check()
        time.sleep(0.3)
        child.check()
        assert child.restarts == 0 and child.restart_at is None
    finally:
        child.terminate()
        child.wait()
