"""Campaign schedules: what the scheduler runs for each campaign, validated and stored in SQL.

Three kinds per campaign (one row each in `campaign_schedule`):

- post:     {"count": N, "every": seconds, "quiet": "22:00-07:00" | None, "tz": "UTC", "platforms": [...] | None}
- export:   {"every": seconds | None, "cron": "0 2 * * *" | None, "formats": [...], "incremental": bool,
             "out": folder | None, "test_fraction": 0.1}
- finetune: {"methods": [...], "threshold": new consensus pairs, "every": check period | None, "cron": ... | None,
             "backend": "local" | "command"}

The CLI (`labelbot schedule ...`) and `/label schedule ...` both go through `set_schedule`, so the
rules are the same everywhere. Job ids are `<kind>:<campaign>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import select

from bot.core.errors import InvalidInput, NotFound
from storage import queries as q
from storage.db import Database
from storage.models import Campaign, CampaignSchedule, utcnow

KINDS = ("post", "export", "finetune", "duel")
# fine-tune method -> the export format it trains on
METHOD_FORMATS = {"dpo": "trl", "reward": "reward", "sft": "sft"}
BACKENDS = ("local", "command")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MIN_PERIOD_S = 1
MAX_POST_COUNT = 1000
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class ScheduleRow:
    campaign: str
    kind: str
    enabled: bool
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def job_id(self) -> str:
        return job_id(self.kind, self.campaign)

    def describe(self) -> str:
        return describe(self.kind, self.spec)


def job_id(kind: str, campaign: str) -> str:
    return f"{kind}:{campaign}"


def parse_duration(value: str | int | None) -> int | None:
    """'90s', '15m', '2h', '1d', '1w' or a number of seconds -> seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        seconds = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", str(value).lower())
        if not m:
            raise InvalidInput(f"{value!r} is not a period; write e.g. 30m, 2h, 1d or 1w.")
        seconds = int(m.group(1)) * UNITS[m.group(2) or "s"]
    if seconds < MIN_PERIOD_S:
        raise InvalidInput("A period must be at least one second.")
    return seconds


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_quiet(value: str | None) -> str | None:
    """'22:00-07:00' or '22-7' -> normalised 'HH:MM-HH:MM' (may wrap midnight); None/'off' -> None."""
    if value is None or str(value).strip().lower() in ("", "none", "off"):
        return None
    m = re.fullmatch(r"\s*(\d{1,2})(?::(\d{2}))?\s*-\s*(\d{1,2})(?::(\d{2}))?\s*", str(value))
    if not m:
        raise InvalidInput(f"Quiet hours {value!r} should look like 22:00-07:00.")
    h1, m1, h2, m2 = int(m.group(1)), int(m.group(2) or 0), int(m.group(3)), int(m.group(4) or 0)
    if not (0 <= h1 < 24 and 0 <= h2 < 24 and 0 <= m1 < 60 and 0 <= m2 < 60) or (h1, m1) == (h2, m2):
        raise InvalidInput(f"Quiet hours {value!r} are not a valid time range.")
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


def in_quiet_hours(now: datetime, quiet: str | None, tz: str = "UTC") -> bool:
    """Whether `now` (aware) falls in the quiet window, read in the campaign's time zone."""
    if not quiet:
        return False
    start_s, end_s = quiet.split("-")
    start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    local = now.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight


def parse_timezone(value: str | None) -> str:
    name = (value or "UTC").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"Unknown time zone {name!r}; use an IANA name such as Europe/Paris.") from None
    return name


def parse_cron(value: str | None, tz: str = "UTC") -> str | None:
    """Validate a 5-field crontab expression (minute hour day month weekday)."""
    if value is None or str(value).strip() == "":
        return None
    from apscheduler.triggers.cron import CronTrigger

    fields = str(value).split()
    if len(fields) != 5:
        raise InvalidInput(f"Cron {value!r} needs 5 fields: minute hour day month weekday.")
    # crontab counts weekdays from Sunday = 0 (7 too); APScheduler 3 from Monday = 0. Names mean the same to both.
    fields[4] = re.sub(r"\d+", lambda m: WEEKDAYS[int(m.group()) % 7] if int(m.group()) <= 7 else m.group(), fields[4])
    expr = " ".join(fields)
    try:
        CronTrigger.from_crontab(expr, timezone=tz)
    except ValueError as exc:
        raise InvalidInput(f"Cron {value!r} is not valid: {exc}.") from None
    return expr


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def validate_spec(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A clean spec for `kind`, or InvalidInput naming what is wrong."""
    from scheduler.export import FORMATS

    if kind not in KINDS:
        raise InvalidInput(f"Unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}.")
    known = {"post": {"count", "every", "quiet", "tz", "platforms"},
             "export": {"every", "cron", "formats", "incremental", "out", "test_fraction", "tz"},
             "finetune": {"methods", "threshold", "every", "cron", "backend", "tz"},
             "duel": {"prompts", "count", "every", "cron", "tz"}}[kind]
    unknown = set(raw) - known
    if unknown:
        raise InvalidInput(f"Unknown {kind} schedule setting(s): {', '.join(sorted(unknown))}; "
                           f"expected {', '.join(sorted(known))}.")
    tz = parse_timezone(raw.get("tz"))
    if kind == "post":
        try:
            count = int(raw.get("count", 0))
        except (TypeError, ValueError):
            raise InvalidInput("The post count must be a whole number.") from None
        if not 1 <= count <= MAX_POST_COUNT:
            raise InvalidInput(f"Post between 1 and {MAX_POST_COUNT} items per period.")
        every = parse_duration(raw.get("every"))
        if every is None:
            raise InvalidInput("Say how often to post, e.g. every=1h.")
        platforms = _list(raw.get("platforms")) or None
        for p in platforms or []:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,19}", p):
                raise InvalidInput(f"{p!r} is not a platform name.")
        return {"count": count, "every": every, "quiet": parse_quiet(raw.get("quiet")), "tz": tz,
                "platforms": platforms}
    every = parse_duration(raw.get("every"))
    cron = parse_cron(raw.get("cron"), tz)
    if every and cron:
        raise InvalidInput("Give either a period (every) or a cron expression, not both.")
    if kind == "export":
        if not every and not cron:
            raise InvalidInput("Say when to export: every=1d or cron='0 2 * * *'.")
        formats = _list(raw.get("formats")) or ["trl"]
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise InvalidInput(f"Unknown export format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}.")
        try:
            test_fraction = float(raw.get("test_fraction", 0.1))
        except (TypeError, ValueError):
            raise InvalidInput("test_fraction must be a number in [0, 1).") from None
        if not 0 <= test_fraction < 1:
            raise InvalidInput("test_fraction must be in [0, 1).")
        incremental = raw.get("incremental", True)
        if isinstance(incremental, str):
            incremental = incremental.lower() in ("1", "true", "yes", "on", "incremental")
        out = raw.get("out") or None
        return {"every": every, "cron": cron, "formats": list(dict.fromkeys(formats)), "incremental": bool(incremental),
                "out": str(out) if out else None, "test_fraction": test_fraction, "tz": tz}
    if kind == "duel":
        if not every and not cron:
            raise InvalidInput("Say when to hold a duel: every=1d or cron='0 9 * * 1'.")
        prompts = str(raw.get("prompts") or "")
        if not prompts:
            raise InvalidInput("A duel needs a prompts file (JSONL or text, one prompt per line): prompts=PATH.")
        try:
            count = int(raw.get("count", 20))
        except (TypeError, ValueError):
            raise InvalidInput("The duel prompt count must be a whole number.") from None
        if not 1 <= count <= 500:
            raise InvalidInput("A duel asks between 1 and 500 prompts.")
        return {"prompts": prompts, "count": count, "every": every, "cron": cron, "tz": tz}
    methods = _list(raw.get("methods")) or ["dpo"]
    bad = [m for m in methods if m not in METHOD_FORMATS]
    if bad:
        raise InvalidInput(f"Unknown fine-tune method(s) {', '.join(bad)}; choose from {', '.join(METHOD_FORMATS)}.")
    try:
        threshold = int(raw.get("threshold", 1 if cron else 500))
    except (TypeError, ValueError):
        raise InvalidInput("The threshold must be a whole number of new consensus pairs.") from None
    if threshold < 1:
        raise InvalidInput("The threshold must be at least 1 new consensus pair.")
    backend = raw.get("backend") or "local"
    if backend not in BACKENDS:
        raise InvalidInput(f"Unknown backend {backend!r}; choose from {', '.join(BACKENDS)}.")
    if not every and not cron:
        every = 900  # check for new pairs every 15 minutes
    return {"methods": list(dict.fromkeys(methods)), "threshold": threshold, "every": every, "cron": cron,
            "backend": backend, "tz": tz}


def describe(kind: str, spec: dict[str, Any]) -> str:
    when = f"cron '{spec['cron']}' ({spec.get('tz', 'UTC')})" if spec.get("cron") else \
        f"every {format_duration(int(spec['every']))}"
    if kind == "post":
        quiet = f", quiet {spec['quiet']} {spec['tz']}" if spec.get("quiet") else ""
        where = f" to {', '.join(spec['platforms'])}" if spec.get("platforms") else ""
        return f"post {spec['count']} item(s) {when}{where}{quiet}"
    if kind == "export":
        mode = "incremental" if spec.get("incremental", True) else "cumulative"
        return f"export {', '.join(spec['formats'])} ({mode}) {when}"
    if kind == "duel":
        return f"duel of the newest model against the previous one on {spec['count']} fresh prompt(s) {when}"
    return (f"fine-tune {', '.join(spec['methods'])} ({spec['backend']}) when ≥{spec['threshold']} new consensus "
            f"pair(s), checked {when}")


def _campaign(s: Any, name: str) -> Campaign:
    camp = q.campaign_by_name(s, name)
    if camp is None:
        raise NotFound(f"No campaign named {name!r}.")
    return camp


def set_schedule(db: Database, campaign: str, kind: str, raw: dict[str, Any], actor: str) -> ScheduleRow:
    """Create or replace a campaign's schedule of one kind (validated first: bad input changes nothing)."""
    spec = validate_spec(kind, raw)
    with db.write() as s:
        camp = _campaign(s, campaign)
        row = s.exec(select(CampaignSchedule).where(CampaignSchedule.campaign_id == camp.id,
                                                    CampaignSchedule.kind == kind)).first()
        if row is None:
            row = CampaignSchedule(campaign_id=camp.id, kind=kind, spec=spec)
        else:
            row.spec, row.enabled, row.updated_at = spec, True, utcnow()
        s.add(row)
        q.add_audit(s, actor, "schedule.set", campaign_id=camp.id, kind=kind, spec=spec)
        s.flush()
        return ScheduleRow(camp.name, kind, True, spec, row.created_at, row.updated_at)


def disable_schedule(db: Database, campaign: str, kind: str, actor: str) -> bool:
    """Turn a schedule off (kept for `schedule show`); False when there was none."""
    if kind not in KINDS:
        raise InvalidInput(f"Unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}.")
    with db.write() as s:
        camp = _campaign(s, campaign)
        row = s.exec(select(CampaignSchedule).where(CampaignSchedule.campaign_id == camp.id,
                                                    CampaignSchedule.kind == kind)).first()
        if row is None or not row.enabled:
            return False
        row.enabled, row.updated_at = False, utcnow()
        s.add(row)
        q.add_audit(s, actor, "schedule.off", campaign_id=camp.id, kind=kind)
        return True


def list_schedules(db: Database, campaign: str | None = None, *, enabled_only: bool = False) -> list[ScheduleRow]:
    with db.read() as s:
        stmt = select(CampaignSchedule, Campaign).join(Campaign, Campaign.id == CampaignSchedule.campaign_id)
        if campaign is not None:
            stmt = stmt.where(Campaign.id == _campaign(s, campaign).id)
        if enabled_only:
            stmt = stmt.where(CampaignSchedule.enabled.is_(True))
        rows = s.exec(stmt.order_by(Campaign.name, CampaignSchedule.kind)).all()
        return [ScheduleRow(c.name, r.kind, r.enabled, dict(r.spec), r.created_at, r.updated_at) for r, c in rows]


def get_schedule(db: Database, campaign: str, kind: str, *, enabled_only: bool = False) -> ScheduleRow | None:
    return next((r for r in list_schedules(db, campaign, enabled_only=enabled_only) if r.kind == kind), None)
