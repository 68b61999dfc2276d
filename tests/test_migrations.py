"""Alembic migrations produce exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import head_revision, make_engine


def test_migrated_schema_matches_models(db_url):
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        assert ctx.get_current_revision() == head_revision()
        diff = compare_metadata(ctx, SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_channel_columns_become_campaign_channel_rows(tmp_path):
    """Upgrading past 0007 keeps every existing campaign's Slack and Discord channel, as rows."""
    from sqlalchemy import text

    from storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    engine = make_engine(url)
    with engine.begin() as conn:
        for i, (slack, discord) in enumerate([("C1", "123"), (None, "456"), ("", None)]):
            conn.execute(text(
                "INSERT INTO campaign (name, guidelines, guideline_version, overlap, criteria, slack_channel, "
                "discord_channel, status, reveal, max_extra_votes, agreement_threshold, gold_rate, settings, "
                "created_at) VALUES (:n, '', 1, 3, '[]', :s, :d, 'active', 'quorum', 2, 0.6, 0.1, '{}', "
                "'2026-01-01 00:00:00')"), {"n": f"c{i}", "s": slack, "d": discord})
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT c.name, cc.platform, cc.channel FROM campaign_channel cc "
                                 "JOIN campaign c ON c.id = cc.campaign_id ORDER BY c.name, cc.platform")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("c0", "discord", "123"), ("c0", "slack", "C1"), ("c1", "discord", "456")]
