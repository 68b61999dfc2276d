"""The run ledger (`job_run`): each (job, slot) runs once across restarts, crashes and replicas.

A run starts by inserting its (job, slot) row; the unique key means only one process ever wins a
slot, whatever APScheduler does. While a run is in progress its owner refreshes `heartbeat_at`; a
`running` row whose heartbeat went stale belongs to a process that died mid-run, and the leader
takes it over (a conditional UPDATE, so again only one process wins) and runs the slot again.
Failed runs are retried the same way, up to a few attempts.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from bot import metrics
from storage import queries as q
from storage.db import Database
from storage.models import JobRun, utcnow

FINAL = ("done", "skipped", "gave_up")
MAX_ERROR_CHARS = 4000


def process_owner() -> str:
    """host:pid:boot: a new process (even one reusing a pid) never mistakes old rows for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def as_slot(when: datetime) -> datetime:
    """Slots are UTC and whole seconds, so the same schedule always names the same slot."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Claim:
    run_id: int
    job_id: str
    slot: datetime
    attempt: int


class Ledger:
    def __init__(self, db: Database, owner: str | None = None) -> None:
        self.db = db
        self.owner = owner or process_owner()

    def claim(self, job_id: str, slot: datetime) -> Claim | None:
        """Start (job, slot) unless some process already has; None when the slot is taken."""
        slot = as_slot(slot)
        now = utcnow()
        with self.db.write() as s:
            inserted = q.insert_ignore(s, JobRun, {
                "job_id": job_id, "slot": slot, "status": "running", "owner": self.owner, "attempts": 1,
                "started_at": now, "heartbeat_at": now, "result": {}}, ("job_id", "slot"))
            if not inserted:
                return None
            run_id = s.exec(select(JobRun.id).where(JobRun.job_id == job_id, JobRun.slot == slot)).one()
        return Claim(int(run_id), job_id, slot, 1)

    def reclaim(self, run: JobRun) -> Claim | None:
        """Take over a crashed or failed run (only if nobody else did in between)."""
        now = utcnow()
        with self.db.write() as s:
            res = s.execute(
                update(JobRun)
                .where(JobRun.id == run.id, JobRun.status == run.status, JobRun.owner == run.owner,
                       JobRun.attempts == run.attempts)
                .values(status="running", owner=self.owner, attempts=run.attempts + 1, started_at=now,
                        heartbeat_at=now, finished_at=None)
            )
            if res.rowcount != 1:
                return None
        return Claim(int(run.id), run.job_id, as_slot(run.slot), run.attempts + 1)

    def finish(self, claim: Claim, status: str = "done", result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        with self.db.write() as s:
            s.execute(update(JobRun).where(JobRun.id == claim.run_id, JobRun.owner == self.owner).values(
                status=status, finished_at=utcnow(), result=result or {},
                error=error[:MAX_ERROR_CHARS] if error else None))
        metrics.job_run(claim.job_id, status)

    def heartbeat(self, run_ids: list[int]) -> None:
        if not run_ids:
            return
        with self.db.write() as s:
            s.execute(update(JobRun).where(JobRun.id.in_(run_ids), JobRun.owner == self.owner,
                                           JobRun.status == "running").values(heartbeat_at=utcnow()))

    def to_rerun(self, *, stale_after_s: float, max_attempts: int) -> list[JobRun]:
        """Runs to take over: `running` with a stale heartbeat (crashed) or `failed`, attempts left.

        Stale running rows past their last attempt are marked `gave_up` so they stop showing as running.
        """
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        with self.db.write() as s:
            crashed = list(s.exec(select(JobRun).where(JobRun.status == "running", JobRun.owner != self.owner,
                                                       JobRun.heartbeat_at < cutoff)))
            failed = list(s.exec(select(JobRun).where(JobRun.status == "failed", JobRun.attempts < max_attempts)))
            out = []
            for run in crashed:
                if run.attempts >= max_attempts:
                    s.execute(update(JobRun).where(JobRun.id == run.id, JobRun.status == "running",
                                                   JobRun.owner == run.owner).values(
                        status="gave_up", finished_at=utcnow(),
                        error=f"crashed {run.attempts} time(s) (last owner {run.owner})"))
                else:
                    out.append(run)
            return out + failed

    def has_slot(self, job_id: str, slot: datetime) -> bool:
        with self.db.read() as s:
            return s.exec(select(JobRun.id).where(JobRun.job_id == job_id, JobRun.slot == as_slot(slot))).first() \
                is not None

    def runs(self, job_ids: str | Sequence[str] | None = None, *, limit: int = 50) -> list[JobRun]:
        """The newest runs, of one job id or of any of several (e.g. every job of a campaign)."""
        with self.db.read() as s:
            stmt = select(JobRun).order_by(JobRun.slot.desc(), JobRun.id.desc()).limit(limit)
            if isinstance(job_ids, str):
                stmt = stmt.where(JobRun.job_id == job_ids)
            elif job_ids is not None:
                stmt = stmt.where(JobRun.job_id.in_(list(job_ids)))
            return list(s.exec(stmt))
