"""Named points where the chaos run and the tests make a process die, to prove recovery.

Inert unless the environment variable ``ENVOY_FAULTS`` names a file. Each
line of that file is ``<point> <job id>``; a process that reaches a listed
point for that job replaces the line with ``fired <point> <job id> <pid>
<unix time>`` (each fault fires once, and says when) and kills itself with
SIGKILL, as the OOM killer would. Points:

- ``before_claim``: a worker took the message off the queue and has not
  claimed the job yet.
- ``before_running_woken``: a worker ended a parent's last child and is
  about to run the parent it resumed, which has no message in the queue.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from typing import Any


def point(name: str, job_id: Any) -> None:
    path = os.environ.get("ENVOY_FAULTS")
    if not path:
        return
    wanted = f"{name} {job_id}"
    try:
        with open(path, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            lines = handle.read().splitlines()
            if wanted not in lines:
                return
            lines[lines.index(wanted)] = f"fired {wanted} {os.getpid()} {time.time():.6f}"
            handle.seek(0)
            handle.truncate()
            handle.write("".join(f"{line}\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
