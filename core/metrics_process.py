"""prometheus-client's multiprocess mode, set up before any metric exists.

Every process of the service (gunicorn and hypercorn workers, Celery worker processes, beat,
management commands) writes its metric values to memory-mapped files in
PROMETHEUS_MULTIPROC_DIR; /metrics sums the files of all of them. The directory is shared by
all processes of one deployment (a volume shared by the containers in docker-compose.yml) and
emptied when the deployment starts (`make run` does it; see the operations documentation).

The files are named by process: "<host>-<pid>" rather than the pid alone, so that containers
sharing the directory (each with its own pid 1, 7, ...) never write the same file.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_HOST = socket.gethostname().replace("_", "-") or "host"


def process_identifier() -> str:
    # No "_": prometheus-client splits file names on it.
    return f"{_HOST}-{os.getpid()}"


def multiprocess_setup(directory: str) -> str:
    """Exports PROMETHEUS_MULTIPROC_DIR (for this process and the processes it starts) and
    names metric files by host and pid. Returns the directory, or "" when it cannot be created
    or written: the metrics then stay in this process (single-process mode)."""
    if not directory:
        os.environ.pop(ENV, None)
        return ""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"{directory} is not writable")
    except OSError:
        os.environ.pop(ENV, None)
        return ""
    os.environ[ENV] = directory
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(process_identifier)
    return directory


def multiprocess_dir() -> str:
    return os.environ.get(ENV, "")


def process_exited(pid: int | None = None, identifier: str | None = None) -> None:
    """Removes the live-gauge files of a process that ended (its counters and histograms
    stay: totals keep counting what it did)."""
    if not multiprocess_dir():
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(identifier or f"{_HOST}-{pid or os.getpid()}")


def directory_clear(directory: str) -> None:
    """Empties the directory of a deployment that starts (no process of the last one runs)."""
    path = Path(directory)
    if path.is_dir():
        for item in path.glob("*.db"):
            item.unlink(missing_ok=True)
