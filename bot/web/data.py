"""What the dashboard shows, read from the database (blocking: call through asyncio.to_thread).

Tables owned by other parts (finetune_job, job_run) are reflected when they exist, so the dashboard
works on a database with or without them and renders whatever rows are there. Only listed columns
are rendered, and free text (errors) goes through the log redactor: no secret reaches a page.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, func, inspect
from sqlalchemy import select as sa_select
from sqlmodel import select

from bot.core.errors import NotFound
from bot.logging_setup import Redactor
from storage import queries as q
from storage.db import Database
from storage.models import Campaign, ExportRecord, Flag, Item, Vote

log = logging.getLogger("labelbot.web")

FINETUNE_COLUMNS = ("id", "method", "variant", "backend", "status", "export_format", "export_version", "base_model",
                    "metrics", "artifact_path", "error", "created_at", "started_at", "finished_at")
JOB_RUN_COLUMNS = ("id", "job_id", "slot", "status", "attempts", "started_at", "finished_at", "error", "result")
MAX_FILES_LISTED = 50


@dataclass
class CampaignSummary:
    name: str
    status: str
    items: int
    complete_items: int
    votes: int
    annotators: int
    flagged_items: int
    votes_per_day: list[tuple[str, int]]
    created_at: datetime | None = None

    @property
    def progress(self) -> float:
        return self.complete_items / self.items if self.items else 0.0


@dataclass
class ExportView:
    id: int
    format: str
    version: int
    rows: int
    path: str
    created_at: datetime | None
    manifest_json: str
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes) of downloadable files
    missing: bool = False


class DashboardData:
    """Read-side queries of the dashboard, with a short cache for the expensive per-campaign reports."""

    def __init__(self, db: Database, *, redactor: Redactor | None = None, cache_s: float = 10.0,
                 max_stale_s: float = 600.0) -> None:
        self.db = db
        self.redact = redactor or Redactor()
        self.cache_s = cache_s
        self.max_stale_s = max_stale_s
        self._refreshing: set[tuple[str, str]] = set()
        self._tables: dict[str, Table | None] = {}
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- optional tables (other components)

    def optional_table(self, name: str) -> Table | None:
        """The reflected table, or None when this database does not have it (yet)."""
        with self._lock:
            if name not in self._tables or self._tables[name] is None:
                if inspect(self.db.engine).has_table(name):
                    self._tables[name] = Table(name, MetaData(), autoload_with=self.db.engine)
                else:
                    self._tables[name] = None
            return self._tables[name]

    def _cached(self, kind: str, key: str, fn: Any) -> Any:
        """Fresh for `cache_s`; then served stale (up to `max_stale_s`) while one thread recomputes it, so
        only the first view of a big campaign waits for the reports (seconds at 100k votes)."""
        now = time.monotonic()
        hit = self._cache.get((kind, key))
        if hit and now - hit[0] < self.cache_s:
            return hit[1]
        if hit and now - hit[0] < self.max_stale_s:
            with self._lock:
                start = (kind, key) not in self._refreshing
                self._refreshing.add((kind, key))
            if start:
                threading.Thread(target=self._refresh, args=(kind, key, fn), daemon=True,
                                 name=f"dashboard-{kind}").start()
            return hit[1]
        value = fn()
        self._cache[(kind, key)] = (time.monotonic(), value)
        return value

    def _refresh(self, kind: str, key: str, fn: Any) -> None:
        try:
            self._cache[(kind, key)] = (time.monotonic(), fn())
        except Exception:
            log.exception("dashboard: could not refresh the %s report of %s", kind, key)
        finally:
            with self._lock:
                self._refreshing.discard((kind, key))

    def computed_at(self, kind: str, key: str) -> float | None:
        """Seconds since the cached report was computed (None when not cached)."""
        hit = self._cache.get((kind, key))
        return None if hit is None else time.monotonic() - hit[0]

    # -------------------------------------------------------------- pages

    def campaigns(self, days: int = 14) -> list[CampaignSummary]:
        out = []
        with self.db.read() as s:
            for camp in q.list_campaigns(s):
                c = q.campaign_counts(s, camp.id)
                out.append(CampaignSummary(camp.name, camp.status, c["items"], c["complete_items"], c["votes"],
                                           c["annotators"], c["flagged_items"], self._votes_per_day(s, camp.id, days),
                                           camp.created_at))
        return out

    def campaign(self, name: str) -> Campaign:
        with self.db.read() as s:
            camp = q.campaign_by_name(s, name)
        if camp is None:
            raise NotFound(f"No campaign named {name!r}.")
        return camp

    def stats(self, name: str) -> Any:
        from bot.core.stats import compute_stats

        return self._cached("stats", name, lambda: compute_stats(self.db, name, bootstrap_rounds=100))

    def quality(self, name: str) -> Any:
        from bot.core.quality import quality_report

        return self._cached("quality", name, lambda: quality_report(self.db, name))

    def votes_per_day(self, name: str, days: int = 30) -> list[tuple[str, int]]:
        with self.db.read() as s:
            camp = q.campaign_by_name(s, name)
            if camp is None:
                raise NotFound(f"No campaign named {name!r}.")
            return self._votes_per_day(s, camp.id, days)

    @staticmethod
    def _votes_per_day(s: Any, campaign_id: int, days: int) -> list[tuple[str, int]]:
        """Votes per calendar day (UTC) for the last `days` days, zero-filled."""
        today = datetime.now(UTC).date()
        start = today - timedelta(days=days - 1)
        day = func.date(Vote.created_at)
        rows = s.exec(select(day, func.count()).select_from(Vote).join(Item, Item.id == Vote.item_id)
                      .where(Item.campaign_id == campaign_id,
                             Vote.created_at >= datetime.combine(start, datetime.min.time(), UTC))
                      .group_by(day)).all()
        counts = {str(d)[:10]: int(n) for d, n in rows}
        return [((start + timedelta(days=i)).isoformat(), counts.get((start + timedelta(days=i)).isoformat(), 0))
                for i in range(days)]

    def flags(self, name: str, limit: int = 200) -> list[dict[str, Any]]:
        """Items people flagged (any status), most flagged first, with their latest reasons."""
        with self.db.read() as s:
            camp = q.campaign_by_name(s, name)
            if camp is None:
                raise NotFound(f"No campaign named {name!r}.")
            rows = s.exec(select(Item.external_id, Item.status, Flag.reason, Flag.created_at)
                          .join(Flag, Flag.item_id == Item.id).where(Item.campaign_id == camp.id)
                          .order_by(Flag.created_at.desc())).all()
        out: dict[str, dict[str, Any]] = {}
        for ext, status, reason, _at in rows:
            entry = out.setdefault(ext, {"item": ext, "status": status, "flags": 0, "reasons": []})
            entry["flags"] += 1
            if reason and len(entry["reasons"]) < 3:
                entry["reasons"].append(reason[:300])
        return sorted(out.values(), key=lambda e: -e["flags"])[:limit]

    def exports(self, name: str) -> list[ExportView]:
        with self.db.read() as s:
            camp = q.campaign_by_name(s, name)
            if camp is None:
                raise NotFound(f"No campaign named {name!r}.")
            records = list(s.exec(select(ExportRecord).where(ExportRecord.campaign_id == camp.id)
                                  .order_by(ExportRecord.created_at.desc(), ExportRecord.id.desc()).limit(50)))
        return [self._export_view(r) for r in records]

    def export_record(self, export_id: int) -> ExportRecord | None:
        with self.db.read() as s:
            return s.get(ExportRecord, export_id)

    def _export_view(self, r: ExportRecord) -> ExportView:
        folder = Path(r.path)
        files: list[tuple[str, int]] = []
        missing = not folder.is_dir()
        if not missing:
            for p in sorted(folder.iterdir())[:MAX_FILES_LISTED]:
                if p.is_file() and not p.name.startswith("."):
                    files.append((p.name, p.stat().st_size))
        manifest = r.manifest if isinstance(r.manifest, dict) else {}
        return ExportView(r.id, r.format, r.version, r.rows, r.path, r.created_at,
                          self.redact(json.dumps(manifest, indent=2, sort_keys=True, default=str)), files, missing)

    def finetune_jobs(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]] | None:
        """Fine-tune jobs (newest first), or None when the finetune_job table does not exist."""
        table = self.optional_table("finetune_job")
        if table is None:
            return None
        camp_id = self.campaign(name).id if name else None
        cols = [table.c[c] for c in FINETUNE_COLUMNS if c in table.c]
        stmt = sa_select(*cols).order_by(table.c.id.desc()).limit(limit)
        if camp_id is not None and "campaign_id" in table.c:
            stmt = stmt.where(table.c.campaign_id == camp_id)
        with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        for row in rows:
            row["metrics"] = _as_dict(row.get("metrics"))
            if row.get("error"):
                row["error"] = self.redact(str(row["error"]))[:2000]
        return rows

    def job_runs(self, name: str | None = None, limit: int = 30) -> list[dict[str, Any]] | None:
        """Scheduler runs (newest first), or None when the job_run table does not exist."""
        table = self.optional_table("job_run")
        if table is None:
            return None
        cols = [table.c[c] for c in JOB_RUN_COLUMNS if c in table.c]
        order = table.c.started_at.desc() if "started_at" in table.c else table.c.id.desc()
        stmt = sa_select(*cols).order_by(order).limit(limit)
        if name is not None and "job_id" in table.c:
            stmt = stmt.where(table.c.job_id.like(f"%:{_like_escape(name)}", escape="\\"))
        with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        for row in rows:
            row["result"] = self.redact(json.dumps(_as_dict(row.get("result")), default=str))[:500]
            if row.get("error"):
                row["error"] = self.redact(str(row["error"]))[:2000]
        return rows


def method_comparison(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest succeeded job per (method, variant) with its headline metrics, for the comparison chart."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for job in jobs:  # newest first
        if job.get("status") not in ("succeeded", "done", "success"):
            continue
        key = (str(job.get("method", "?")), str(job.get("variant") or ""))
        if key in seen:
            continue
        m = job.get("metrics") or {}
        seen[key] = {"label": key[0] + (f" / {key[1]}" if key[1] else ""), "job_id": job.get("id"),
                     **{k: v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}}
    return sorted(seen.values(), key=lambda r: r["label"])


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def fmt_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)[:16]
