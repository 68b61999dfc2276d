"""Shared fixtures: a migrated database per test on SQLite and, when LABELBOT_TEST_DATABASE_URL is set,
on PostgreSQL too (a database of its own per test session, so parallel runs never collide)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.core.events import Actor
from bot.core.service import CampaignSpec, LabelingService
from storage.db import Database, upgrade

PG_URL = os.environ.get("LABELBOT_TEST_DATABASE_URL", "")
ADMINS = {("slack", "UADMIN"), ("discord", "900000000000000001")}
CLI = Actor("cli", "", "tester")


def _normalise(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    if not PG_URL:
        pytest.skip("LABELBOT_TEST_DATABASE_URL not set")
    base = make_url(_normalise(PG_URL))
    name = f"labelbot_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database URL (parametrised over SQLite and PostgreSQL)."""
    if request.param == "sqlite":
        path = tmp_path / "labelbot.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "labelbot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def service(db: Database) -> LabelingService:
    return LabelingService(db, ADMINS, seed=0)


def make_items(n: int, responses: int = 2, *, prefix: str = "ext", gold_every: int = 0) -> list[dict]:
    """Import rows in the documented item shape."""
    rows = []
    for i in range(n):
        row = {
            "id": f"{prefix}-{i}",
            "prompt": f"Question {i}: explain topic {i}.",
            "responses": [{"model": f"model-{r}", "text": f"Answer {r} to question {i}."} for r in range(responses)],
        }
        if gold_every and i % gold_every == 0:
            row["gold"] = {"best": 0, "explanation": "The first answer is correct."}
        rows.append(row)
    return rows


@pytest.fixture
def campaign(service: LabelingService) -> str:
    """A campaign `demo` (k=3, two criteria) with 6 two-response items."""
    from bot.core.importer import validate_row

    service.create_campaign(CampaignSpec("demo", guidelines="# Guide\nPrefer correct answers.", overlap=3,
                                         criteria=("helpfulness", "harmlessness"),
                                         channels=(("slack", "C123"), ("discord", "200000000000000001")),
                                         gold_rate=0.0), CLI)
    items = [validate_row(r, i)[0] for i, r in enumerate(make_items(6), start=1)]
    service.import_items("demo", items, CLI)
    return "demo"


def actor(user: str, platform: str = "slack", workspace: str = "T1") -> Actor:
    return Actor(platform, workspace, user)
