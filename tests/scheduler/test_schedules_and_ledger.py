"""Schedule validation and storage, slot arithmetic, the run ledger, /label schedule, fine-tune trigger rule."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.adapters.commands import handle
from bot.config import Settings
from bot.core.errors import InvalidInput
from scheduler.app import latest_slot
from scheduler.jobs import JobContext, decide_finetune, finetune_job, post_job, trigger_finetune
from scheduler.ledger import Ledger
from scheduler.schedules import in_quiet_hours, list_schedules, parse_cron, parse_duration, set_schedule
from storage.models import CampaignSchedule, FinetuneTrigger, JobRun, Post
from tests.conftest import actor
from tests.scheduler.conftest import ROOT, cli_cmd, cli_env, vote_item

ADMIN = actor("UADMIN")


def count(db, model) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_bad_schedules_are_refused_and_change_nothing(service, campaign, db):
    for kind, raw in [("post", {"count": 0, "every": "1h"}), ("post", {"count": 3}),
                      ("post", {"count": 3, "every": "soon"}), ("post", {"count": 3, "every": "1h", "quiet": "25-3"}),
                      ("export", {"every": "1d", "cron": "0 2 * * *"}), ("export", {"cron": "61 * * * *"}),
                      ("export", {"every": "1d", "formats": "trl,csv"}), ("finetune", {"methods": "ppo"}),
                      ("post", {"count": 1, "every": "1h", "tz": "Mars/Olympus"}), ("cleanup", {}),
                      ("post", {"count": 1, "every": "1h", "color": "red"})]:
        with pytest.raises(InvalidInput):
            set_schedule(db, campaign, kind, raw, "t")
    assert count(db, CampaignSchedule) == 0


def test_schedule_storage_and_replacement(service, campaign, db):
    set_schedule(db, campaign, "post", {"count": 5, "every": "2h", "quiet": "22-7", "tz": "Europe/Paris"}, "t")
    row = set_schedule(db, campaign, "post", {"count": 7, "every": "30m"}, "t")
    assert row.spec == {"count": 7, "every": 1800, "quiet": None, "tz": "UTC", "platforms": None}
    set_schedule(db, campaign, "finetune", {"methods": "dpo,reward", "cron": "0 3 * * 0"}, "t")
    rows = list_schedules(db, campaign)
    assert [(r.kind, r.job_id) for r in rows] == [("finetune", "finetune:demo"), ("post", "post:demo")]
    assert rows[0].spec["threshold"] == 1 and "cron '0 3 * * sun'" in rows[0].describe()


def test_durations_quiet_hours_and_slots():
    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200 and parse_duration("1w") == 604800
    night = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert in_quiet_hours(night, "22:00-07:00") and not in_quiet_hours(night.replace(hour=12), "22:00-07:00")
    assert in_quiet_hours(datetime(2026, 7, 1, 21, 30, tzinfo=UTC), "22:00-07:00", "Europe/Paris")  # 23:30 CEST
    now = datetime(2026, 3, 4, 10, 17, 33, tzinfo=UTC)
    assert latest_slot({"every": 3600}, now) == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert latest_slot({"every": 86400}, now) == datetime(2026, 3, 4, tzinfo=UTC)
    assert latest_slot({"cron": "30 2 * * *", "tz": "UTC"}, now) == datetime(2026, 3, 4, 2, 30, tzinfo=UTC)
    sunday = parse_cron("0 3 * * 0")
    assert sunday == "0 3 * * sun"  # crontab's Sunday = 0, not APScheduler 3's Monday = 0
    assert latest_slot({"cron": sunday, "tz": "UTC"}, now) == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    assert parse_cron("0 9 * * 1-5") == "0 9 * * mon-fri"


def test_ledger_runs_a_slot_once_even_under_races(db):
    slot = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    ledgers = [Ledger(db) for _ in range(6)]
    wins: list[object] = []
    barrier = threading.Barrier(len(ledgers))

    def go(ledger: Ledger) -> None:
        barrier.wait()
        claim = ledger.claim("export:demo", slot)
        if claim is not None:
            wins.append(claim)

    threads = [threading.Thread(target=go, args=(lg,)) for lg in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and count(db, JobRun) == 1
    assert ledgers[0].claim("export:demo", slot.replace(microsecond=0)) is None  # slots are whole seconds


def test_crashed_run_is_detected_and_taken_over_once(db):
    dead, alive_a, alive_b = Ledger(db, "host:1:dead"), Ledger(db), Ledger(db)
    claim = dead.claim("export:demo", datetime(2026, 1, 1, tzinfo=UTC))
    assert claim is not None
    assert alive_a.to_rerun(stale_after_s=60, max_attempts=3) == []  # heartbeat is fresh: not a crash yet
    with db.write() as s:
        row = s.get(JobRun, claim.run_id)
        row.heartbeat_at = datetime.now(UTC) - timedelta(seconds=120)
        s.add(row)
    stale = alive_a.to_rerun(stale_after_s=60, max_attempts=3)
    assert [r.id for r in stale] == [claim.run_id]
    first, second = alive_a.reclaim(stale[0]), alive_b.reclaim(stale[0])
    assert first is not None and first.attempt == 2 and second is None
    alive_a.finish(first, "done", {"ok": True})
    dead.finish(claim, "failed", error="late writer")  # the dead owner can no longer touch the row
    with db.read() as s:
        row = s.get(JobRun, claim.run_id)
    assert row.status == "done" and row.attempts == 2 and row.owner == alive_a.owner


def test_label_schedule_command(service, campaign, db):
    settings = Settings(database_url=db.url)
    reply = handle(service, settings, ADMIN, "schedule post 5 every=2h quiet 22:00-07:00 tz=Europe/Paris",
                   channel="C123")
    assert reply.ok, reply.text
    assert "post 5 item(s) every 2h" in reply.text and "quiet 22:00-07:00 Europe/Paris" in reply.text
    assert handle(service, settings, ADMIN, 'schedule export cron="0 2 * * *" formats=trl,kto cumulative',
                  channel="C123").ok
    assert handle(service, settings, ADMIN, "schedule finetune dpo,sft threshold=200", channel="C123").ok
    shown = handle(service, settings, ADMIN, "schedule", channel="C123")
    assert shown.text.count("\n•") == 3 and "export trl, kto (cumulative)" in shown.text
    assert handle(service, settings, ADMIN, "schedule off post", channel="C123").ok
    assert "(off)" in handle(service, settings, ADMIN, "schedule show", channel="C123").text
    bad = handle(service, settings, ADMIN, "schedule post 5 every=never", channel="C123")
    assert not bad.ok and "not a period" in bad.text
    denied = handle(service, settings, actor("UPLEB"), "schedule post 5 every=1h", channel="C123")
    assert not denied.ok
    with db.read() as s:
        post = s.exec(select(CampaignSchedule).where(CampaignSchedule.kind == "post")).one()
    assert post.enabled is False and post.spec["count"] == 5


def test_cli_runs_of_one_campaign_are_found_among_many_newer_runs(service, campaign, db_url, db):
    ledger = Ledger(db)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.finish(ledger.claim("export:demo", start))
    for hour in range(1, 60):  # another campaign's runs, all newer
        ledger.finish(ledger.claim("post:other", start + timedelta(hours=hour)))
    out = subprocess.run(cli_cmd("schedule", "runs", "--campaign", campaign, "--limit", "1", "--json"), cwd=ROOT,
                         env=cli_env(db_url), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [r["job"] for r in json.loads(out.stdout)] == ["export:demo"]


def test_cli_schedule_commands(service, campaign, db_url):
    env = cli_env(db_url)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli_cmd("schedule", *args), cwd=ROOT, env=env, capture_output=True, text=True)

    ok = cli("post", "--campaign", campaign, "--count", "3", "--every", "1h", "--quiet", "23-6")
    assert ok.returncode == 0, ok.stderr
    assert cli("export", "--campaign", campaign, "--every", "1d", "--formats", "trl,votes").returncode == 0
    bad = cli("export", "--campaign", campaign, "--every", "1d", "--formats", "xml")
    assert bad.returncode == 1 and "Unknown export format" in bad.stderr
    shown = cli("show", "--json")
    assert {r["job_id"] for r in json.loads(shown.stdout)} == {"post:demo", "export:demo"}
    now = cli("run-now", "--campaign", campaign, "export")
    assert now.returncode == 0, now.stderr
    runs = json.loads(cli("runs", "--json").stdout)
    assert runs[0]["job"] == "export:demo" and runs[0]["status"] == "done"


def test_post_job_posts_through_registry_and_keeps_quiet_hours(service, campaign, db, monkeypatch):
    from bot.adapters import POSTERS

    monkeypatch.setitem(POSTERS, "loopback", "tests.scheduler.loopback_poster:post_campaign")
    ctx = JobContext(Settings(database_url=db.url), db, service)
    spec = {"count": 2, "every": 3600, "quiet": "22:00-07:00", "tz": "UTC", "platforms": ["loopback"]}
    quiet = post_job(ctx, campaign, spec, datetime(2026, 1, 1, 23, 0, tzinfo=UTC))
    assert quiet.status == "skipped" and "quiet" in quiet.result["reason"]
    assert count(db, Post) == 0
    done = post_job(ctx, campaign, spec, datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert done.status == "done" and done.result["posted"] == {"loopback": 2}
    with db.read() as s:
        assert len([p for p in s.exec(select(Post)) if p.platform == "loopback" and p.message_id]) == 2
    service.set_status(campaign, "paused", actor("UADMIN"))
    assert post_job(ctx, campaign, spec, datetime(2026, 1, 1, 12, 0, tzinfo=UTC)).status == "skipped"


def test_finetune_decision_rule():
    assert decide_finetune(pairs_now=10, pairs_at_last=0, threshold=5, version_trained=False).launch
    assert not decide_finetune(pairs_now=10, pairs_at_last=8, threshold=5, version_trained=False).launch
    assert not decide_finetune(pairs_now=99, pairs_at_last=0, threshold=5, version_trained=True).launch


class RecordingLauncher:
    """A real launcher for tests: records each launch and hands out job ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Path, str]] = []
        self.lock = threading.Lock()

    def __call__(self, db, settings, campaign, method, export_path, backend) -> int:  # type: ignore[no-untyped-def]
        assert (Path(export_path) / "train.jsonl").exists()
        with self.lock:
            self.calls.append((campaign, method, Path(export_path), backend))
            return len(self.calls)


def test_finetune_trigger_threshold_and_once_per_version(service, campaign, db, tmp_path):
    launcher = RecordingLauncher()
    ctx = JobContext(Settings(database_url=db.url, labelbot_export_dir=str(tmp_path)), db, service, launcher)
    vote_item(service, campaign, [0, 0, 0])
    spec = {"methods": ["dpo"], "threshold": 2, "backend": "local", "every": 900}
    first = finetune_job(ctx, campaign, spec, datetime.now(UTC))
    assert first.status == "skipped" and "threshold 2" in first.result["methods"]["dpo"]["reason"]
    vote_item(service, campaign, [1, 1, 0], start_user=5)
    second = finetune_job(ctx, campaign, spec, datetime.now(UTC))
    assert second.status == "done" and len(launcher.calls) == 1
    assert launcher.calls[0][2] == tmp_path / campaign / "trl" / "v0001"
    again = finetune_job(ctx, campaign, spec, datetime.now(UTC))
    assert again.status == "skipped" and len(launcher.calls) == 1
    # a reward model on the same data is another method: it trains too, once
    outs = []
    threads = [threading.Thread(target=lambda: outs.append(
        trigger_finetune(ctx, campaign, "reward", threshold=1))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.status for o in outs) == ["done", "skipped", "skipped"]
    assert [c[1] for c in launcher.calls] == ["dpo", "reward"]
    with db.read() as s:
        rows = s.exec(select(FinetuneTrigger).order_by(FinetuneTrigger.id)).all()
    assert [(r.method, r.export_version, r.job_id, r.pairs) for r in rows] == [("dpo", 1, 1, 2), ("reward", 1, 2, 2)]


def test_failed_launch_lets_the_version_train_later(service, campaign, db, tmp_path):
    def broken(*_args):  # type: ignore[no-untyped-def]
        raise RuntimeError("GPU on fire")

    ctx = JobContext(Settings(database_url=db.url, labelbot_export_dir=str(tmp_path)), db, service, broken)
    vote_item(service, campaign, [0, 0, 0])
    with pytest.raises(RuntimeError):
        trigger_finetune(ctx, campaign, "dpo")
    assert count(db, FinetuneTrigger) == 0
    ctx.launcher = RecordingLauncher()
    assert trigger_finetune(ctx, campaign, "dpo").status == "done"
