"""Graceful shutdown: in-flight HTTP requests and votes finish before components stop."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from bot.core import hooks
from bot.core.events import Actor, VoteCast
from bot.server import COMPONENTS
from storage import queries as q
from storage.db import Database
from storage.models import Post, Vote

from .conftest import drop_created, free_port, seed, serving, settings_for


async def test_in_flight_request_and_vote_finish_before_components_stop(db_url: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    component = "tests.dashboard.slow_component"
    monkeypatch.setitem(COMPONENTS, "scheduler", f"{component}:start")
    slow_component = importlib.import_module(component)  # the module object the server loads
    slow_component.EVENTS.clear()
    db = Database(db_url)
    seeded = await asyncio.to_thread(seed, db, tmp_path / "exports")
    try:
        await _shutdown_scenario(db, db_url, seeded, slow_component)
    finally:
        drop_created(db, seeded)
        db.dispose()


async def _shutdown_scenario(db: Database, db_url: str, seeded: dict, slow_component) -> None:  # type: ignore[no-untyped-def]
    post_id = seeded["split_post"]
    with db.read() as s:
        item_id = s.get(Post, post_id).item_id
    port = free_port()
    vote_done: list[float] = []
    locked = threading.Event()

    def hold_item_lock() -> None:  # another writer holds the item, so the vote below has to wait
        with db.write() as s:
            q.lock_item(s, item_id)
            locked.set()
            time.sleep(1.2)

    def vote() -> None:
        seeded["service"].cast_vote(VoteCast(Actor("slack", "T1", "U4"), post_id, "A"))
        vote_done.append(time.monotonic())

    http = aiohttp.ClientSession()
    async with serving(settings_for(db_url, port), port, {"scheduler", "web"}):
        holder = threading.Thread(target=hold_item_lock)
        holder.start()
        locked.wait(5)
        voter = threading.Thread(target=vote)
        voter.start()
        request = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/test/slow?s=1"))
        deadline = time.monotonic() + 10
        while not (slow_component.EVENTS and hooks.votes_in_flight()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert slow_component.EVENTS and hooks.votes_in_flight() == 1
        # leaving the block sets the stop event while both are still in flight
    response = await request
    assert response.status == 200 and await response.text() == "done"
    await http.close()
    holder.join()
    voter.join()
    events = dict(slow_component.EVENTS)
    assert vote_done and vote_done[0] <= events["component stopped"]
    assert events["request finished"] <= events["component stopped"]
    with db.read() as s:
        assert s.query(Vote).filter(Vote.post_id == post_id).count() == 4
