"""Dashboard data layer: reports are served stale while one background thread recomputes them."""

from __future__ import annotations

import time

from bot.core.events import Actor, VoteCast
from bot.web.data import DashboardData


def test_stale_reports_are_served_then_refreshed(service, campaign):
    data = DashboardData(service.db, cache_s=0.0, max_stale_s=600)
    assert data.stats(campaign).votes == 0
    post = service.prepare_posts(campaign, "slack", "C123", 1)[0].post_id
    service.cast_vote(VoteCast(Actor("slack", "T1", "U1"), post, "A"))
    assert data.stats(campaign).votes == 0  # stale, answered at once; a refresh started
    deadline = time.monotonic() + 10
    while data._refreshing and time.monotonic() < deadline:
        time.sleep(0.02)
    assert data.stats(campaign).votes == 1
    assert data.computed_at("stats", campaign) is not None and data.computed_at("quality", campaign) is None
    fresh = DashboardData(service.db, cache_s=0.0, max_stale_s=0.0)  # nothing stale allowed: computed inline
    assert fresh.stats(campaign).votes == 1


def test_optional_tables_are_none_when_absent(service, campaign):
    data = DashboardData(service.db)
    from sqlalchemy import inspect

    names = set(inspect(service.db.engine).get_table_names())
    jobs, runs = data.finetune_jobs(campaign), data.job_runs(campaign)
    assert (jobs is None) == ("finetune_job" not in names)
    assert (runs is None) == ("job_run" not in names)
    assert data.flags(campaign) == [] and data.exports(campaign) == []
    assert [n for _d, n in data.votes_per_day(campaign, 7)] == [0] * 7
