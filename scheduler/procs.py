"""Process checks shared by the exporter's temp-folder sweep and the fine-tune job reaper."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while `pid` runs on this host; a zombie (ended, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
