"""`labelbot demo`: a working labelbot in one command, with nothing configured and no network.

It creates (or upgrades) the database — by default the SQLite file in the working folder — seeds a
campaign `demo` from the sample guidelines and items shipped in the package (`bot/examples/`, also
reachable as `examples/` in a checkout), makes a browser invite for the person at the keyboard, and
serves the voting page and the dashboard on 127.0.0.1. Running it again reuses what is there: no
duplicate items, the same voter.

The demo's own settings live only in this process: a random dashboard token (unless
LABELBOT_DASHBOARD_TOKEN is set) so the printed sign-in link works, the local URL as the public URL,
and quieter logs (warnings only, unless LABELBOT_LOG_LEVEL is set).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.config import Settings
from bot.core.events import Actor
from bot.core.importer import parse_file
from bot.core.service import CampaignSpec, LabelingService
from storage.domain import Platform

EXAMPLES = Path(__file__).parent / "examples"
CAMPAIGN = "demo"
VOTER = "you (demo)"
DEMO_ADMIN = "demo-admin"  # the dashboard subject of the printed sign-in link (a web admin of this process)
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DemoSetup:
    created: bool  # the campaign was new
    added: int  # items imported this run
    items: int  # items in the campaign


def seed(service: LabelingService, actor: Actor) -> DemoSetup:
    """Create the `demo` campaign from the shipped examples (idempotent)."""
    names = {c.name for c in service.list_campaigns()}
    created = CAMPAIGN not in names
    if created:
        service.create_campaign(CampaignSpec(
            CAMPAIGN, guidelines=(EXAMPLES / "guide.md").read_text(encoding="utf-8"), overlap=1,
            criteria=("helpfulness", "accuracy"), gold_rate=0.1), actor)
    added, present = service.import_items(CAMPAIGN, parse_file(EXAMPLES / "items.jsonl"), actor)
    return DemoSetup(created, added, added + present)


def demo_settings(cfg: Settings, port: int) -> Settings:
    """The running demo's settings: local URLs, a dashboard key, a web admin for the sign-in link, quiet logs."""
    update: dict[str, object] = {
        "labelbot_public_url": f"http://{HOST}:{port}", "labelbot_host": HOST, "labelbot_port": port,
        "labelbot_admins": ",".join(x for x in (cfg.labelbot_admins, f"{Platform.WEB}:{DEMO_ADMIN}") if x),
    }
    token = cfg.labelbot_dashboard_token
    if token is None or not token.get_secret_value():
        update["labelbot_dashboard_token"] = SecretStr(secrets.token_urlsafe(18))
    if "labelbot_log_level" not in cfg.model_fields_set:
        update["labelbot_log_level"] = "WARNING"
    return cfg.model_copy(update=update)


def banner(cfg: Settings, vote_url: str, signin_url: str, token_printed: str | None, setup: DemoSetup,
           port: int) -> list[str]:
    """What the demo prints once it is listening."""
    base = f"http://{HOST}:{port}"
    lines = [
        f"labelbot demo: campaign '{CAMPAIGN}' with {setup.items} items"
        + (f" ({setup.added} added now)" if setup.added else "") + ".",
        "",
        f"  Vote in your browser:   {vote_url}",
        f"  Dashboard (sign in):    {signin_url}",
    ]
    if token_printed:
        lines.append(f"  ...or sign in at {base}/dashboard/login with the token {token_printed}")
    hint = "" if port == 3000 else f"LABELBOT_PORT={port} "
    lines += [
        "",
        "Votes, skips, flags, rankings and corrections are stored in the database; after a few votes the",
        f"dashboard's leaderboard for '{CAMPAIGN}' moves. Invite someone else with:",
        f"  {hint}labelbot invite --campaign {CAMPAIGN} --name NAME",
        "Press Ctrl+C to stop.",
    ]
    return lines
