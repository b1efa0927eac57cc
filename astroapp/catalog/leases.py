"""Who is localizing a photo: a lease, so that a worker killed mid-photo (kill -9, power
loss) does not leave it in `localizing` for ever.

A photo put in `localizing` records its worker in `status_reason`: host, pid and the
process's start time (a pid alone may be reused by another process after a reboot or a
wrap-around). A row whose worker is not running any more goes back to `new` when the next
localization starts (CLI or GUI). A worker on another host cannot be checked from here: its
rows are left alone.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

_LEASE = re.compile(r"^localizing: pid (\d+) \(start (\S+)\) on (\S+)$")
INTERRUPTED = "localization was interrupted (its process ended): back to new"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "?" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else "?"


def localizing_reason() -> str:
    """The `status_reason` of a photo this process is localizing."""
    pid = os.getpid()
    return f"localizing: pid {pid} (start {_process_start(pid)}) on {socket.gethostname()}"


def _worker_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _process_start(pid)
    return start == "?" or now == "?" or now == start


def release_stale_localizing(catalog: Any) -> list[int]:
    """Photos left in `localizing` by a worker that is not running any more go back to
    `new`; returns their ids. Rows without a lease (written before leases existed) count as
    stale; rows leased on another host are left alone."""
    host = socket.gethostname()
    released = []
    with catalog.transaction():
        rows = catalog.connection.execute(
            "SELECT id, status_reason FROM photos WHERE status = 'localizing'").fetchall()
        for photo_id, reason in rows:
            m = _LEASE.match(reason or "")
            if m is not None and (m.group(3) != host or _worker_alive(int(m.group(1)), m.group(2))):
                continue
            catalog.set_status(photo_id, "new", INTERRUPTED)
            released.append(int(photo_id))
    return released
