"""Voting-page fixtures: two campaigns (2-response and 3-response items) served by the real `labelbot serve`
HTTP component in the test's event loop, and invite links made through the service like the CLI does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.core import invites
from bot.core.events import Actor
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from storage.db import Database
from tests.dashboard.conftest import free_port, serving, settings_for

CLI = Actor("cli", "", "tester")
ADMINS = {("slack", "UADMIN")}


@dataclass
class Site:
    base: str
    port: int
    settings: Settings
    service: LabelingService
    db: Database

    def invite(self, campaign: str, name: str | None = "Rita", days: float = 30) -> str:
        return self.service.create_invite(CLI, campaign, name, base_url=self.base, days=days).url

    def count(self, table: str) -> int:
        from sqlalchemy import text

        with self.db.engine.connect() as conn:
            return int(conn.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one())


def seed(service: LabelingService) -> None:
    service.create_campaign(CampaignSpec("pairs", guidelines="# Pairs\nPrefer **correct** answers.", overlap=3,
                                         criteria=("helpfulness",), gold_rate=0.0), CLI)
    service.create_campaign(CampaignSpec("triples", guidelines="Rank them all.", overlap=3, gold_rate=0.0), CLI)
    pairs = [{"id": f"p-{i}", "prompt": f"Pair question {i}: what is `{i} + {i}`?",
              "responses": [{"model": "alpha", "text": f"It is {2 * i}.\nA second line."},
                            {"model": "beta", "text": f"Maybe {2 * i + 1}?"}]} for i in range(2)]
    triple = [{"id": "t-0", "prompt": "Name a prime number.",
               "responses": [{"model": m, "text": t} for m, t in (("alpha", "7"), ("beta", "9"), ("gamma", "2"))]}]
    service.import_items("pairs", [validate_row(r, n)[0] for n, r in enumerate(pairs, 1)], CLI)
    service.import_items("triples", [validate_row(r, n)[0] for n, r in enumerate(triple, 1)], CLI)


@pytest.fixture
async def site(db_url: str) -> AsyncIterator[Site]:
    invites._keys.clear()  # each test database gets a key of its own (PostgreSQL tables are truncated)
    db = Database(db_url)
    service = LabelingService(db, ADMINS, seed=5)
    await asyncio.to_thread(seed, service)
    port = free_port()
    cfg = settings_for(db_url, port)
    try:
        async with serving(cfg, port):
            yield Site(f"http://127.0.0.1:{port}", port, cfg, service, db)
    finally:
        db.dispose()


def form_fields(html: str, action_suffix: str) -> dict[str, str]:
    """The hidden csrf and nonce of the form posting to `.../<action_suffix>`."""
    form = re.search(rf'<form method="post" action="([^"]*/{action_suffix})"[^>]*>(.*?)</form>', html, re.S)
    assert form, f"no {action_suffix} form in the page"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(2)))
    fields["_action"] = form.group(1)
    return fields


async def open_invite(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientResponse, str]:
    resp = await http.get(url)
    return resp, await resp.text()


def client() -> aiohttp.ClientSession:
    # browsers keep cookies for 127.0.0.1; aiohttp's jar needs unsafe=True for IP hosts
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def submit(http: aiohttp.ClientSession, base: str, html: str, action: str, data: dict[str, Any],
                 *, origin: str | None = "same", to: str | None = None) -> tuple[int, str]:
    """Post the page's `action` form (or its fields to the action `to`, as a crafted request would)."""
    fields = form_fields(html, action)
    url = base + fields.pop("_action")
    if to:
        url = url.rsplit("/", 1)[0] + "/" + to
    headers = {"Origin": base} if origin == "same" else ({"Origin": origin} if origin else {})
    resp = await http.post(url, data={**fields, **data}, headers=headers)
    return resp.status, await resp.text()


def confirmation(html: str) -> str:
    found = re.search(r'<div id="confirmation"[^>]*>(.*?)</div>', html, re.S)
    return re.sub(r"<[^>]+>", " ", found.group(1)).strip() if found else ""


