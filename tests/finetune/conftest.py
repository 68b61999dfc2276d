"""Fixtures for fine-tune and generation tests: synthetic exports, a tiny causal LM, settings, votes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlmodel import select

from bot.config import Settings
from bot.core.events import VoteCast
from scheduler.finetune.synthetic import completion_rows, preference_rows, split_tasks, write_export
from storage.models import Post
from tests.conftest import actor

# Nothing in these tests may reach a model hub; subprocesses inherit this.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ft_settings(tmp_path: Path, db_url: str = "", **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": db_url, "labelbot_artifact_dir": str(tmp_path / "artifacts"),
                                 "labelbot_export_dir": str(tmp_path / "exports")}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def pref_export(tmp_path: Path) -> Path:
    """A `trl`-format export of campaign `demo`: 96 train pairs, 32 held-out pairs on unseen topics."""
    train_tasks, test_tasks = split_tasks()
    return write_export(tmp_path / "exports" / "demo" / "trl" / "v0001", preference_rows(96, seed=1, tasks=train_tasks),
                        preference_rows(32, seed=2, tasks=test_tasks), fmt="trl", campaign="demo")


@pytest.fixture
def sft_export(tmp_path: Path) -> Path:
    return write_export(tmp_path / "exports" / "demo" / "sft" / "v0001", completion_rows(32, seed=1),
                        completion_rows(8, seed=2), fmt="sft", campaign="demo")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a word-level tokenizer fitted on the synthetic vocabulary."""
    from scheduler.finetune.tiny import build_tiny_causal_lm

    texts = [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in preference_rows(400, seed=7)]
    texts.append("user assistant system : ? ! . , hello")
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "tiny-llama", texts)


def vote_all(service, db, campaign: str, *, prefer: int = 0, voters: int = 3) -> int:  # type: ignore[no-untyped-def]
    """Every voter picks the response at position `prefer` on every item; returns the number of votes."""
    views = service.prepare_posts(campaign, "slack", "C123", 100)
    n = 0
    for view in views:
        with db.read() as s:
            perm = s.get(Post, view.post_id).permutation
        letter = "ABCDEFGH"[perm.index(prefer)]
        for v in range(voters):
            service.cast_vote(VoteCast(actor(f"U{v}"), view.post_id, letter, delivery_id=f"d-{view.post_id}-{v}"))
            n += 1
    with db.read() as s:
        assert s.exec(select(Post)).first() is not None
    return n


@pytest.fixture
def sdb(sqlite_url: str):  # type: ignore[no-untyped-def]
    """A migrated SQLite database with campaign `demo` (channels on Slack and Discord) and 6 items."""
    from bot.core.importer import validate_row
    from bot.core.service import CampaignSpec, LabelingService
    from storage.db import Database
    from tests.conftest import ADMINS, CLI, make_items

    db = Database(sqlite_url)
    svc = LabelingService(db, ADMINS, seed=0)
    svc.create_campaign(CampaignSpec("demo", overlap=3, channels=(("slack", "C123"), ("discord", "200000000000000001")),
                                     gold_rate=0.0), CLI)
    svc.import_items("demo", [validate_row(r, i)[0] for i, r in enumerate(make_items(6), start=1)], CLI)
    yield db
    db.dispose()
