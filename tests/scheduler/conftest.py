"""Helpers for the scheduler tests: voting items to quorum, a campaign with mixed outcomes."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from bot.core.events import CorrectionSubmitted, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from tests.conftest import CLI, actor, make_items

ROOT = Path(__file__).resolve().parents[2]


def vote_item(service: LabelingService, campaign: str, choices: list[str | int], *, start_user: int = 0,
              platform_channel: str = "C123") -> int:
    """Post the next item and cast one vote per entry: an int is a response position, a str a choice."""
    view = service.prepare_posts(campaign, "slack", platform_channel, 1)[0]
    from storage.models import Post

    with service.db.read() as s:
        perm = s.get(Post, view.post_id).permutation
    for i, choice in enumerate(choices):
        letter = "AB"[perm.index(choice)] if isinstance(choice, int) else choice
        service.cast_vote(VoteCast(actor(f"U{start_user + i}"), view.post_id, letter))
    return view.post_id


def correct(service: LabelingService, post_id: int, letter: str, text: str, user: str = "UC") -> None:
    service.submit_correction(CorrectionSubmitted(actor(user), post_id, letter, text))


def add_campaign(service: LabelingService, name: str = "demo", n: int = 6, responses: int = 2) -> str:
    service.create_campaign(CampaignSpec(name, overlap=3, channels=(("slack", "C123"),), gold_rate=0.0), CLI)
    items = [validate_row(r, i)[0] for i, r in enumerate(make_items(n, responses, prefix=name), start=1)]
    service.import_items(name, items, CLI)
    return name


def cli_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "LABELBOT_"))}
    env.update({"DATABASE_URL": db_url, "PYTHONPATH": str(ROOT), **extra})
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def labelled(service: LabelingService) -> str:
    """`demo`: item 0 unanimous for response 0, item 1 2-1 for response 1, item 2 tie, item 3 both bad,
    items 4-5 open; one correction of item 0's losing answer."""
    camp = add_campaign(service)
    p0 = vote_item(service, camp, [0, 0, 0])
    vote_item(service, camp, [1, 1, 0])
    vote_item(service, camp, ["tie", "tie", "tie"])
    vote_item(service, camp, ["both_bad", "both_bad", "both_bad"])
    from storage.models import Post

    with service.db.read() as s:
        perm = s.get(Post, p0).permutation
    correct(service, p0, "AB"[perm.index(1)], "A much better second answer.")
    return camp
