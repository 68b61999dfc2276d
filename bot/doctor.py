"""`labelbot doctor`: plain-words checks of configuration, database and optional parts."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # ok | warn | fail
    message: str


def run_checks(cfg: Settings) -> list[Check]:
    from storage.db import current_revision, head_revision

    checks: list[Check] = []
    try:
        rev = current_revision(cfg.database_url)
        if rev is None:
            checks.append(Check("database", "fail", "reachable but not initialised: run `labelbot init`"))
        elif rev != head_revision():
            checks.append(Check("database", "fail", f"schema {rev} is behind {head_revision()}: run `labelbot init`"))
        else:
            kind = "SQLite" if cfg.database_url.startswith("sqlite") else "PostgreSQL"
            checks.append(Check("database", "ok", f"{kind}, schema up to date ({rev})"))
    except Exception as exc:
        checks.append(Check("database", "fail", f"cannot connect ({type(exc).__name__}); check DATABASE_URL"))
    if cfg.slack_configured:
        checks.append(Check("slack", "ok", "bot token and signing secret set"
                            + ("; Socket Mode on" if cfg.slack_app_token else "; HTTP at POST /slack/events")))
    elif cfg.slack_bot_token or cfg.slack_signing_secret:
        missing = "SLACK_SIGNING_SECRET" if cfg.slack_bot_token else "SLACK_BOT_TOKEN"
        checks.append(Check("slack", "fail", f"{missing} is missing"))
    else:
        checks.append(Check("slack", "warn", "not configured (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET)"))
    if cfg.discord_configured:
        checks.append(Check("discord", "ok", "bot token set"))
    else:
        checks.append(Check("discord", "warn", "not configured (set DISCORD_BOT_TOKEN)"))
    if cfg.admins:
        checks.append(Check("admins", "ok", f"{len(cfg.admins)} admin(s) from LABELBOT_ADMINS"))
    else:
        checks.append(Check("admins", "warn", "LABELBOT_ADMINS is empty: only the CLI can run admin commands"))
    for folder_name in ("labelbot_export_dir", "labelbot_artifact_dir"):
        folder = Path(getattr(cfg, folder_name))
        probe = folder if folder.exists() else folder.parent if folder.parent.exists() else Path.cwd()
        level = "ok" if os.access(probe, os.W_OK) else "fail"
        checks.append(Check(folder_name.removeprefix("labelbot_"), level,
                            f"{folder} {'writable' if level == 'ok' else 'not writable'}"))
    ml = ("torch", "transformers", "trl", "peft", "datasets")
    missing_ml = [m for m in ml if importlib.util.find_spec(m) is None]
    if missing_ml:
        checks.append(Check("fine-tuning", "warn", f"not installed ({', '.join(missing_ml)}): "
                            "pip install torch==2.13.0 && pip install -e '.[ml]'"))
    else:
        checks.append(Check("fine-tuning", "ok", "torch, transformers, trl, peft and datasets importable"))
    return checks
