"""Dashboard fixtures: a seeded campaign (votes, a flag, a split item, an export, fine-tune jobs and
scheduler runs) and the real `labelbot serve` HTTP server running in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, MetaData, Table, inspect, text

from bot.config import Settings
from bot.core.events import Actor, ItemFlagged, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from bot.server import ServerContext, run_server
from storage.db import Database

ADMIN_TOKEN = "dash-admin-token-7f3a9c1e5b"
SIGNING_SECRET = "slack-signing-secret-0d9e8f7a6b5c"
SLACK_TOKEN = "xoxb-111-222-secretvalue"
ADMINS = "slack:UADMIN,discord:900000000000000001"
CLI = Actor("cli", "", "tester")
MODELS = ["alpha", "beta", "gamma", "delta"]
STRENGTH = {"alpha": 0.85, "beta": 0.6, "gamma": 0.4, "delta": 0.15}
VOTERS = ["U1", "U2", "U3", "U4"]
LEAKY_ERROR = f"upload failed: token {SLACK_TOKEN} rejected"

# The shapes of the scheduler's and fine-tuning's tables (other branches own them): created here only
# when the database does not already have them, so the dashboard's "render what exists" path is tested.
OPTIONAL_DDL = {
    "finetune_job": """CREATE TABLE finetune_job (id {pk}, campaign_id INTEGER NOT NULL,
        method VARCHAR(16) NOT NULL, variant VARCHAR(16) NOT NULL, backend VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL, export_path VARCHAR NOT NULL, command TEXT, error TEXT, metrics JSON NOT NULL,
        artifact_path VARCHAR, created_at TIMESTAMP NOT NULL, finished_at TIMESTAMP)""",
    "job_run": """CREATE TABLE job_run (id {pk}, job_id VARCHAR(191) NOT NULL, slot TIMESTAMP NOT NULL,
        status VARCHAR(16) NOT NULL, owner VARCHAR(200) NOT NULL, attempts INTEGER NOT NULL,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, error TEXT, result JSON NOT NULL)""",
}


def settings_for(url: str, port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(database_url=url, labelbot_admins=ADMINS,
                                  labelbot_dashboard_token=SecretStr(ADMIN_TOKEN),
                                  slack_signing_secret=SecretStr(SIGNING_SECRET),
                                  slack_bot_token=SecretStr(SLACK_TOKEN),
                                  labelbot_public_url=f"http://127.0.0.1:{port}")
    values.update(extra)
    return Settings(_env_file=None, **values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _filler(column: Any) -> Any:
    """A value for a NOT NULL column the seed does not name (the real tables have more columns)."""
    t = column.type
    if isinstance(t, JSON):
        return {}
    if isinstance(t, Boolean):
        return False
    if isinstance(t, Integer | Float):
        return 0
    if isinstance(t, DateTime):
        return datetime.now(UTC)
    return ""


def insert_row(db: Database, table_name: str, **values: Any) -> None:
    table = Table(table_name, MetaData(), autoload_with=db.engine)
    row = dict(values)
    for col in table.columns:
        if col.name not in row and not col.nullable and col.server_default is None and not col.primary_key:
            row[col.name] = _filler(col)
    for col in table.columns:
        if col.name in row and isinstance(col.type, JSON) is False and isinstance(row[col.name], dict):
            row[col.name] = json.dumps(row[col.name])
    with db.engine.begin() as conn:
        conn.execute(table.insert(), [{k: v for k, v in row.items() if k in table.c}])


def seed(db: Database, export_dir: Path) -> dict[str, Any]:
    """Campaign `arena`: 16 two-model items among four models, four voters, one flag, one export."""
    service = LabelingService(db, {("slack", "UADMIN")}, seed=1)
    service.create_campaign(CampaignSpec("arena", guidelines="Prefer correct answers.", overlap=3,
                                         channels=(("slack", "C1"),), gold_rate=0.0), CLI)
    pairs = [(a, b) for i, a in enumerate(MODELS) for b in MODELS[i + 1:]]
    rows = []
    for i in range(16):
        a, b = pairs[i % len(pairs)]
        rows.append({"id": f"q-{i}", "prompt": f"Question {i}?",
                     "responses": [{"model": a, "text": f"{a} says {'x' * (i + 3)}"},
                                   {"model": b, "text": f"{b} says {'y' * (20 - i)}"}]})
    items = [validate_row(r, n)[0] for n, r in enumerate(rows, start=1)]
    service.import_items("arena", items, CLI)
    rng = random.Random(7)
    views = service.prepare_posts("arena", "slack", "C1", 16)
    votes = 0
    for n, view in enumerate(views):
        service.attach_message(view.post_id, f"m{view.post_id}", channel="C1")
        for v, user in enumerate(VOTERS[:3]):
            if n == 0:  # a split item: three different answers
                choice = ["A", "B", "tie"][v]
            else:
                models = {r.letter: r.model for r in service.post_view(view.post_id).responses}
                # blind until quorum: recover the models from the item for the simulated preference
                models = models if all(models.values()) else _models_of(db, view.post_id)
                pa = STRENGTH[models["A"]] / (STRENGTH[models["A"]] + STRENGTH[models["B"]])
                choice = "A" if rng.random() < pa else "B"
            service.cast_vote(VoteCast(Actor("slack", "T1", user), view.post_id, choice, delivery_id=f"d{n}-{v}"))
            votes += 1
    service.flag(ItemFlagged(Actor("slack", "T1", "U4"), views[1].post_id, "the prompt is ambiguous"))
    from scheduler.export import export_campaign

    export = export_campaign(db, "arena", "trl", export_dir / "arena" / "trl")
    insp = inspect(db.engine)
    created = []
    with db.engine.begin() as conn:
        for name, ddl in OPTIONAL_DDL.items():
            if not insp.has_table(name):
                created.append(name)
                pk = "SERIAL PRIMARY KEY" if db.engine.dialect.name == "postgresql" else "INTEGER PRIMARY KEY"
                conn.execute(text(ddl.format(pk=pk)))
        camp_id = conn.execute(text("SELECT id FROM campaign WHERE name = 'arena'")).scalar_one()
    now = datetime.now(UTC)
    insert_row(db, "finetune_job", campaign_id=camp_id, method="reward", variant="full", backend="local",
               status="succeeded", export_path=str(export.path), metrics={"eval_accuracy": 0.81, "train_seconds": 42.5},
               artifact_path="artifacts/arena/reward-full", created_at=now, finished_at=now)
    insert_row(db, "finetune_job", campaign_id=camp_id, method="reward", variant="lora", backend="local",
               status="succeeded", export_path=str(export.path), metrics={"eval_accuracy": 0.77, "train_seconds": 12.0},
               artifact_path="artifacts/arena/reward-lora", created_at=now, finished_at=now)
    insert_row(db, "finetune_job", campaign_id=camp_id, method="dpo", variant="full", backend="command",
               status="failed", export_path=str(export.path), command=f"train --token {SLACK_TOKEN}",
               error=LEAKY_ERROR, metrics={}, created_at=now)
    insert_row(db, "job_run", job_id="export:arena", slot=now, status="done", owner="host-1", attempts=1,
               started_at=now, finished_at=now, result={"rows": export.rows})
    return {"votes": votes, "export": export, "service": service, "split_post": views[0].post_id,
            "created_tables": created}


def drop_created(db: Database, seeded: dict[str, Any]) -> None:
    """Drop the stand-in tables again: the PostgreSQL test database outlives the test (schema tests follow)."""
    with db.engine.begin() as conn:
        for name in seeded.get("created_tables", []):
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def _models_of(db: Database, post_id: int) -> dict[str, str]:
    from storage.models import Post, Response

    with db.read() as s:
        post = s.get(Post, post_id)
        by_pos = {r.position: r.model for r in s.query(Response).filter(Response.item_id == post.item_id)}
    return {"AB"[i]: by_pos[pos] for i, pos in enumerate(post.permutation)}


@dataclass
class Live:
    base: str
    port: int
    settings: Settings
    ctx: ServerContext
    db: Database
    seeded: dict[str, Any]


@contextlib.asynccontextmanager
async def serving(settings: Settings, port: int, wanted: set[str] | None = None) -> AsyncIterator[ServerContext]:
    stop = asyncio.Event()
    ready: asyncio.Future[ServerContext] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_server(settings, wanted or {"web"}, "127.0.0.1", port, stop_event=stop,
                                          started=lambda ctx, _port: ready.set_result(ctx)))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    try:
        yield ready.result()
    finally:
        stop.set()
        await task


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    db = Database(db_url)
    seeded = await asyncio.to_thread(seed, db, tmp_path / "exports")
    port = free_port()
    cfg = settings_for(db_url, port)
    try:
        async with serving(cfg, port) as ctx:
            yield Live(f"http://127.0.0.1:{port}", port, cfg, ctx, db, seeded)
    finally:
        drop_created(db, seeded)
        db.dispose()
