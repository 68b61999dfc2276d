"""The scheduler component: APScheduler 3 under a leader lock, with a run ledger.

How the guarantees are met (see APScheduler 3's pitfalls in docs and issue reports):

- Jobs live in the project database (SQLAlchemyJobStore, table `apscheduler_jobs`) under explicit ids
  (`post:<campaign>`, ...). A job is only (re)added when its schedule changed, so a restart keeps its
  stored next run time and a run missed during downtime fires on start; `coalesce=True` makes it
  fire once, and a generous `misfire_grace_time` (a week, not APScheduler's 1 s) keeps it from being
  dropped. `max_instances=1` keeps a slow run from overlapping the next.
- APScheduler writes the next run time *before* a job finishes, so it cannot tell a crashed run from
  a finished one. Every run therefore goes through the ledger (`job_run`): a slot runs when its row
  is inserted (unique per job and slot), a stale `running` row is a crash and is run again, and a
  catch-up pass runs the latest slot of every schedule if it has no row yet (downtime past the grace).
- APScheduler cannot share a job store between processes, so only the holder of the leader lock
  (PostgreSQL advisory lock / file lock on SQLite) starts it; the others wait to take over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import Settings
from bot.core.service import LabelingService
from scheduler.jobs import JOBS, JobContext, Launcher, Outcome
from scheduler.leader import LeaderLock, lock_for
from scheduler.ledger import Claim, Ledger, as_slot
from scheduler.schedules import ScheduleRow, describe, get_schedule, list_schedules
from storage.db import Database
from storage.models import JobRun

log = logging.getLogger("labelbot.scheduler")

EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # interval slots are whole periods since this Monday, 00:00 UTC
MISFIRE_GRACE_S = 7 * 86400
MAINTAIN_JOB = "labelbot:maintain"
_CURRENT: SchedulerApp | None = None  # the leader in this process, for jobs restored from the store


def build_trigger(spec: dict[str, Any]) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if spec.get("cron"):
        return CronTrigger.from_crontab(spec["cron"], timezone=spec.get("tz") or "UTC")
    return IntervalTrigger(seconds=int(spec["every"]), start_date=EPOCH, timezone=UTC)


def latest_slot(spec: dict[str, Any], now: datetime) -> datetime | None:
    """The newest scheduled time <= now (the slot a run at `now` stands for)."""
    now = now.astimezone(UTC)
    if not spec.get("cron"):
        every = int(spec["every"])
        k = int((now - EPOCH).total_seconds() // every)
        return EPOCH + timedelta(seconds=k * every)
    trigger = build_trigger(spec)
    for lookback in (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=400)):
        fire = trigger.get_next_fire_time(None, now - lookback)
        best = None
        while fire is not None and fire <= now:
            best = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if best is not None:
            return as_slot(best)
    return None


def fingerprint(row: ScheduleRow) -> str:
    spec = {k: row.spec.get(k) for k in ("every", "cron", "tz")}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run_job(job_id: str, fp: str | None = None) -> None:
    """What the persistent job store calls (an importable function with plain arguments)."""
    app = _CURRENT
    if app is None or not app.is_leader:
        log.warning("job %s fired in a process that is not the scheduler leader; ignored", job_id)
        return
    app.run_scheduled(job_id)


class SchedulerApp:
    """Leader election + APScheduler + ledger for one process."""

    def __init__(self, settings: Settings, db: Database, *, service: LabelingService | None = None,
                 launcher: Launcher | None = None, lock: LeaderLock | None = None, poll_s: float | None = None,
                 stale_after_s: float | None = None, max_attempts: int = 3, workers: int = 4) -> None:
        self.settings = settings
        self.db = db
        self.ctx = JobContext(settings, db, service or LabelingService(db, settings.admins), launcher)
        self.lock = lock or lock_for(db.url)
        self.ledger = Ledger(db)
        self.poll_s = poll_s if poll_s is not None else settings.labelbot_scheduler_poll_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else settings.labelbot_scheduler_stale_s
        self.max_attempts = max_attempts
        self.workers = workers
        self.scheduler: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[int, Claim] = {}
        self._running_lock = threading.Lock()
        self._leader = threading.Event()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="labelbot-scheduler", daemon=True)
        self._thread.start()

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_leader(self, timeout: float) -> bool:
        return self._leader.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling; let running jobs finish (up to `timeout`) while still holding the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._step_down(wait_s=timeout)
        self.lock.release()

    def _loop(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if not self.is_leader:
                    if self.lock.try_acquire():
                        self._become_leader()
                elif not self.lock.still_held():
                    log.error("scheduler lost the leader lock; stepping down")
                    self._step_down(wait_s=0)
                now = datetime.now(UTC).timestamp()
                if now - last_beat >= min(self.poll_s, 5.0):
                    last_beat = now
                    with self._running_lock:
                        ids = list(self._running)
                    self.ledger.heartbeat(ids)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("scheduler loop error")
            self._stop.wait(min(self.poll_s, 1.0))

    def _become_leader(self) -> None:
        global _CURRENT
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": SQLAlchemyJobStore(engine=self.db.engine, tablename="apscheduler_jobs"),
                       "internal": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(self.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        )
        if logging.getLogger("apscheduler.executors").level == logging.NOTSET:
            logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)  # one line per run is ours
        _CURRENT = self
        self.scheduler = sched
        self._leader.set()
        sched.start(paused=True)
        self.sync()  # before resuming: stored jobs keep their (possibly missed) next run time
        sched.resume()
        sched.add_job(self.maintain, "interval", seconds=self.poll_s, id=MAINTAIN_JOB, jobstore="internal",
                      next_run_time=datetime.now(UTC), replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=None)
        log.info("scheduler is the leader (%s)", self.ledger.owner)

    def _step_down(self, wait_s: float) -> None:
        global _CURRENT
        sched, self.scheduler = self.scheduler, None
        if sched is not None:
            try:
                sched.shutdown(wait=False)
            except Exception:
                log.exception("error shutting APScheduler down")
        deadline = datetime.now(UTC) + timedelta(seconds=wait_s)
        while datetime.now(UTC) < deadline:
            with self._running_lock:
                if not self._running:
                    break
                ids = list(self._running)
            self.ledger.heartbeat(ids)
            time.sleep(0.2)
        self._leader.clear()
        if _CURRENT is self:
            _CURRENT = None

    # ------------------------------------------------------------------ jobs

    def sync(self) -> dict[str, list[str]]:
        """Make APScheduler's stored jobs match the enabled schedules (add, change, remove)."""
        sched = self.scheduler
        if sched is None:
            return {}
        wanted = {r.job_id: r for r in list_schedules(self.db, enabled_only=True)}
        existing = {j.id: j for j in sched.get_jobs(jobstore="default")}
        changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        for jid in existing.keys() - wanted.keys():
            sched.remove_job(jid, jobstore="default")
            changes["removed"].append(jid)
        for jid, row in wanted.items():
            fp = fingerprint(row)
            job = existing.get(jid)
            if job is not None and job.kwargs.get("fp") == fp:
                continue
            sched.add_job(run_job, build_trigger(row.spec), args=[jid], kwargs={"fp": fp}, id=jid,
                          name=describe(row.kind, row.spec), jobstore="default", replace_existing=True)
            changes["changed" if job is not None else "added"].append(jid)
        if any(changes.values()):
            log.info("scheduler jobs synced: %s", changes)
        return changes

    def maintain(self) -> None:
        """Periodic: pick up schedule changes, rerun crashed/failed slots, catch up missed latest slots."""
        if not self.is_leader:
            return
        self.sync()
        with self._running_lock:
            mine = set(self._running)
        for run in self.ledger.to_rerun(stale_after_s=self.stale_after_s, max_attempts=self.max_attempts):
            if run.id in mine:
                continue
            claim = self.ledger.reclaim(run)
            if claim is not None:
                log.warning("rerunning %s slot %s (was %s, attempt %d)", run.job_id, claim.slot.isoformat(),
                            run.status, claim.attempt)
                self._submit(claim)
        now = datetime.now(UTC)
        for row in list_schedules(self.db, enabled_only=True):
            slot = latest_slot(row.spec, now)
            if slot is None or slot < as_slot(row.updated_at) or self.ledger.has_slot(row.job_id, slot):
                continue
            claim = self.ledger.claim(row.job_id, slot)
            if claim is not None:
                log.info("catching up %s slot %s", row.job_id, slot.isoformat())
                self._submit(claim)

    def _submit(self, claim: Claim) -> None:
        with self._running_lock:
            self._running[claim.run_id] = claim
        sched = self.scheduler
        if sched is None:
            threading.Thread(target=self.execute, args=(claim,), daemon=True).start()
            return
        sched.add_job(self.execute, "date", run_date=datetime.now(UTC), args=[claim],
                      id=f"run:{claim.run_id}:{claim.attempt}", jobstore="internal", replace_existing=True,
                      misfire_grace_time=None)

    def run_scheduled(self, job_id: str) -> None:
        """A fire from APScheduler: run the slot it stands for, unless someone already has."""
        row = self._schedule(job_id)
        if row is None:
            return
        slot = latest_slot(row.spec, datetime.now(UTC))
        if slot is None:
            return
        claim = self.ledger.claim(job_id, slot)
        if claim is None:
            log.debug("%s slot %s already run", job_id, slot.isoformat())
            return
        with self._running_lock:
            self._running[claim.run_id] = claim
        self.execute(claim)

    def run_now(self, kind: str, campaign: str) -> JobRun:
        """Run a job once, now, through the ledger (a manual slot); returns its ledger row."""
        from scheduler.schedules import job_id as make_id

        jid = make_id(kind, campaign)
        claim = self.ledger.claim(jid, datetime.now(UTC))
        if claim is None:
            raise RuntimeError("a run of this job started this very second; try again")
        with self._running_lock:
            self._running[claim.run_id] = claim
        done = threading.Event()

        def beat() -> None:  # this process is not the leader's loop: keep the run visibly alive
            while not done.wait(max(0.5, min(self.stale_after_s / 4, 5.0))):
                self.ledger.heartbeat([claim.run_id])

        threading.Thread(target=beat, daemon=True).start()
        try:
            self.execute(claim, require_enabled=False)
        finally:
            done.set()
        return next(r for r in self.ledger.runs(jid, limit=5) if r.id == claim.run_id)

    def execute(self, claim: Claim, *, require_enabled: bool = True) -> None:
        try:
            kind, campaign = claim.job_id.split(":", 1)
            row = self._schedule(claim.job_id, enabled_only=require_enabled)
            if kind not in JOBS:
                self.ledger.finish(claim, "skipped", {"reason": f"unknown job kind {kind!r}"})
                return
            if row is None and require_enabled:
                self.ledger.finish(claim, "skipped", {"reason": "schedule removed or disabled"})
                return
            spec = row.spec if row is not None else _default_spec(kind)
            fn = JOBS[kind]
            kwargs = {"job_id": claim.job_id} if kind == "export" else {}
            outcome: Outcome = fn(self.ctx, campaign, spec, claim.slot, **kwargs)
            self.ledger.finish(claim, outcome.status, outcome.result)
            log.info("%s slot %s: %s %s", claim.job_id, claim.slot.isoformat(), outcome.status, outcome.result)
        except Exception as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.error("%s slot %s failed: %s", claim.job_id, claim.slot.isoformat(), message)
            self.ledger.finish(claim, "failed", error=message + "\n" + traceback.format_exc(limit=5))
        finally:
            with self._running_lock:
                self._running.pop(claim.run_id, None)

    def _schedule(self, job_id: str, enabled_only: bool = True) -> ScheduleRow | None:
        kind, campaign = job_id.split(":", 1)
        try:
            return get_schedule(self.db, campaign, kind, enabled_only=enabled_only)
        except Exception:  # the campaign was deleted or renamed since the job was scheduled
            return None


def _default_spec(kind: str) -> dict[str, Any]:
    from scheduler.schedules import validate_spec

    return validate_spec(kind, {"count": 1, "every": 3600} if kind == "post" else {"every": 86400})


async def start(ctx: Any) -> Any:
    """`labelbot serve` component: run the scheduler (leader election included) in this process."""
    app = SchedulerApp(ctx.settings, ctx.db, service=ctx.service)
    await asyncio.to_thread(app.start)
    ctx.health["scheduler"] = app.healthy
    ctx.extras["scheduler"] = app

    async def stop() -> None:
        await asyncio.to_thread(app.stop)

    return stop
