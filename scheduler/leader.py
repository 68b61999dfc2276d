"""Leader lock: only one scheduler process per database runs jobs.

APScheduler 3 cannot share a job store between processes ("duplicate execution ... You can't",
its FAQ), so every replica runs this election and only the holder starts APScheduler. PostgreSQL:
a session-level advisory lock on a dedicated connection, released by the server the moment the
holder's connection drops (process killed included). SQLite: an OS file lock next to the database
file, released by the kernel when the process dies.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger("labelbot.scheduler")
# A fixed 64-bit key for pg_try_advisory_lock ("labelbot" in ASCII).
ADVISORY_KEY = 0x6C6162656C626F74


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...


class PostgresLeaderLock:
    def __init__(self, url: str, key: int = ADVISORY_KEY) -> None:
        self.engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.key = key
        self.conn: Connection | None = None

    def try_acquire(self) -> bool:
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
            got = bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except Exception as exc:  # database down: not the leader, try again later
            log.warning("leader lock: cannot reach the database (%s)", type(exc).__name__)
            self._drop()
            return False
        return got

    def still_held(self) -> bool:
        if self.conn is None:
            return False
        try:
            held = self.conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": self.key}).scalar()
            return bool(held)
        except Exception:
            self._drop()
            return False

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop()
        self.engine.dispose()

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = path
        self.lock = FileLock(str(path), thread_local=False)

    def try_acquire(self) -> bool:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
            return True
        except Timeout:
            return False

    def still_held(self) -> bool:
        return self.lock.is_locked

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release(force=True)


def lock_for(url: str) -> LeaderLock:
    """The leader lock that fits the database at `url`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return PostgresLeaderLock(url)
    database = parsed.database
    if not database or database == ":memory:":
        return FileLeaderLock(Path(tempfile.gettempdir()) / "labelbot-scheduler.lock")
    return FileLeaderLock(Path(database).with_name(Path(database).name + ".scheduler.lock"))
