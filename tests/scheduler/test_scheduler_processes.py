"""The scheduler across restarts, crashes and replicas (real APScheduler, real separate processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.config import Settings
from scheduler.app import SchedulerApp
from scheduler.schedules import set_schedule
from storage.models import JobRun
from tests.scheduler.conftest import ROOT, cli_cmd, cli_env, free_port, vote_item


def runs(db, job: str) -> list[JobRun]:
    with db.read() as s:
        return list(s.exec(select(JobRun).where(JobRun.job_id == job).order_by(JobRun.slot)))


def wait_for(predicate, timeout: float, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def manifests(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("v*/manifest.json"))]


def test_restart_keeps_jobs_and_runs_a_missed_slot_once(service, campaign, db, tmp_path):
    vote_item(service, campaign, [0, 0, 0])
    set_schedule(db, campaign, "export", {"every": "2s", "formats": "votes", "incremental": False}, "t")
    settings = Settings(database_url=db.url, labelbot_export_dir=str(tmp_path))
    first = SchedulerApp(settings, db, poll_s=0.5, stale_after_s=5)
    first.start()
    assert first.wait_leader(10)
    wait_for(lambda: len([r for r in runs(db, "export:demo") if r.status == "done"]) >= 2, 15)
    first.stop()
    stopped = datetime.now(UTC)
    with db.read() as s:
        stored = s.connection().execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all()
    assert [r[0] for r in stored] == ["export:demo"]  # persisted under its explicit id
    before = {r.slot for r in runs(db, "export:demo")}
    time.sleep(5.2)  # downtime: two or three slots are missed
    restarted_at = datetime.now(UTC)
    assert datetime.fromtimestamp(stored[0][1], UTC) < restarted_at  # the stored next run was missed
    second = SchedulerApp(settings, db, poll_s=0.5, stale_after_s=5)
    second.start()
    assert second.wait_leader(10)
    time.sleep(1.0)
    second.stop()
    with db.read() as s:
        assert s.connection().execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == 1
    missed = [r for r in runs(db, "export:demo") if r.slot not in before and stopped < r.slot <= restarted_at]
    latest_missed = datetime.fromtimestamp(int(restarted_at.timestamp()) // 2 * 2, UTC)
    assert [(r.slot, r.status) for r in missed] == [(latest_missed, "done")]  # once, not never, not N times
    slots = [m["trigger"]["slot"] for m in manifests(tmp_path / campaign / "votes")]
    assert len(slots) == len(set(slots))


@pytest.fixture
def bench_db(tmp_path: Path) -> str:
    """A SQLite database with 25,000 complete items and 80,000 votes (bench's builder), so an export takes a while."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_export", ROOT / "bench" / "bench_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "big.db"
    module.build(path, 25_000, 80_000, 100)
    return f"sqlite:///{path}"


def test_crash_mid_export_keeps_old_version_and_the_slot_reruns(bench_db, tmp_path):
    from scheduler.export import export_campaign
    from storage.db import Database

    db = Database(bench_db)
    out = tmp_path / "exports"
    old = export_campaign(db, "bench", "votes", out / "bench" / "votes")
    old_files = {p.name: p.read_bytes() for p in old.path.iterdir()}
    set_schedule(db, "bench", "export", {"every": "1h", "formats": "votes", "incremental": False}, "t")
    with db.write() as s:  # the schedule has existed for a while: its latest hourly slot is due now
        s.connection().execute(text("UPDATE campaign_schedule SET updated_at = :t"),
                               {"t": datetime.now(UTC) - timedelta(hours=3)})
    env = cli_env(bench_db, LABELBOT_EXPORT_DIR=str(out), LABELBOT_SCHEDULER_POLL_S="0.3",
                  LABELBOT_SCHEDULER_STALE_S="2", LABELBOT_PORT=str(free_port()))
    proc = subprocess.Popen(cli_cmd("serve", "scheduler"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: list((out / "bench" / "votes").glob(".tmp-*")), 60, step=0.01)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # crash mid-export
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (crashed,) = runs(db, "export:bench")
    assert crashed.status == "running"
    folder = out / "bench" / "votes"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".tmp-")) == ["latest", "v0001"]
    assert {p.name: p.read_bytes() for p in old.path.iterdir()} == old_files
    assert os.readlink(folder / "latest") == "v0001"
    settings = Settings(database_url=bench_db, labelbot_export_dir=str(out))
    app = SchedulerApp(settings, db, poll_s=0.3, stale_after_s=2)
    app.start()
    try:
        wait_for(lambda: runs(db, "export:bench")[0].status == "done", 60, step=0.2)
    finally:
        app.stop()
    (rerun,) = runs(db, "export:bench")
    assert rerun.attempts == 2 and rerun.slot == crashed.slot
    assert not list(folder.glob(".tmp-*"))  # the dead process's temp folder was swept
    new = manifests(folder)[-1]
    assert new["version"] == 2 and new["trigger"]["slot"] == crashed.slot.isoformat()
    assert new["counts"]["rows"] == 80_000


def test_two_scheduler_processes_on_postgres_run_each_slot_once(pg_database, tmp_path):
    from bot.core.service import LabelingService
    from storage.db import Database
    from tests.conftest import ADMINS, _truncate_pg
    from tests.scheduler.conftest import add_campaign

    _truncate_pg(pg_database)
    db = Database(pg_database)
    service = LabelingService(db, ADMINS, seed=0)
    camp = add_campaign(service)
    vote_item(service, camp, [0, 0, 1])
    set_schedule(db, camp, "export", {"every": "1s", "formats": "votes", "incremental": False}, "t")
    out = tmp_path / "exports"

    def spawn() -> subprocess.Popen:
        env = cli_env(pg_database, LABELBOT_EXPORT_DIR=str(out), LABELBOT_SCHEDULER_POLL_S="0.3",
                      LABELBOT_SCHEDULER_STALE_S="2", LABELBOT_PORT=str(free_port()))
        return subprocess.Popen(cli_cmd("serve", "scheduler"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    procs = [spawn(), spawn()]
    try:
        wait_for(lambda: len(runs(db, "export:demo")) >= 3, 60, step=0.2)
        owners = {r.owner.split(":")[1] for r in runs(db, "export:demo")}
        assert len(owners) == 1  # one leader runs everything while both are up
        leader = next(p for p in procs if str(p.pid) in owners)
        follower = next(p for p in procs if p is not leader)
        time.sleep(2.0)
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed_at = datetime.now(UTC)
        wait_for(lambda: any(r.owner.split(":")[1] == str(follower.pid) and r.slot > killed_at
                             for r in runs(db, "export:demo")), 30, step=0.2)
        time.sleep(3.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    ledger = runs(db, "export:demo")
    assert {r.owner.split(":")[1] for r in ledger} == {str(leader.pid), str(follower.pid)}
    slots = [m["trigger"]["slot"] for m in manifests(out / camp / "votes")]
    assert len(slots) == len(set(slots)), "a slot was exported twice"
    done = {r.slot.isoformat() for r in ledger if r.status == "done"}
    assert done <= set(slots) and len(done) >= 5
    assert all(r.status in ("done", "running") for r in ledger)
    db.dispose()
