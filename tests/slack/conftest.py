"""Fixtures for the Slack tests: a fake Slack Web API and `labelbot serve slack` (the project's own
server, the real Bolt app) on 127.0.0.1, talking over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.adapters.slack import listeners, poster
from bot.config import Settings
from bot.core.service import LabelingService
from bot.server import ServerContext, run_server
from storage.db import Database
from tests.slack.fake_slack import FakeSlack
from tests.slack.payloads import APP_TOKEN, SECRET, TOKEN, form_payload, sign


@dataclass
class SlackEnv:
    fake: FakeSlack
    ctx: ServerContext
    port: int
    http: aiohttp.ClientSession
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def handlers(self) -> Any:
        return self.ctx.extras["slack"]

    @property
    def service(self) -> LabelingService:
        return self.ctx.service

    @property
    def db(self) -> Database:
        return self.ctx.db

    async def send_raw(self, body: str, headers: dict[str, str]) -> tuple[int, str, float]:
        start = time.perf_counter()
        async with self.http.post(self.url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
            return resp.status, text, time.perf_counter() - start

    async def interact(self, payload: dict[str, Any], **headers: str) -> tuple[int, str]:
        body = form_payload(payload)
        status, text, _ = await self.send_raw(body, {**sign(body), **headers})
        return status, text

    async def command(self, body: str) -> tuple[int, str]:
        status, text, _ = await self.send_raw(body, sign(body))
        return status, text

    async def event(self, payload: dict[str, Any], **headers: str) -> tuple[int, str]:
        body = json.dumps(payload)
        status, text, _ = await self.send_raw(body, {**sign(body, content_type="application/json"), **headers})
        return status, text

    async def settle(self) -> None:
        """Wait for the adapter's background work (votes, confirmations, message updates) to finish."""
        for _ in range(3):
            await self.handlers.drain(timeout=20)
            await asyncio.sleep(0.02)


def slack_settings(db_url: str, fake: FakeSlack, tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=db_url, slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.api_url,
        slack_app_token=None, labelbot_admins="slack:UADMIN", labelbot_export_dir=str(tmp_path / "exports"),
        discord_bot_token=None,
    )
    values.update(extra)
    return Settings(_env_file=None, **values)


async def start_server(settings: Settings) -> tuple[ServerContext, int, asyncio.Event, asyncio.Task[None]]:
    started: asyncio.Future[tuple[ServerContext, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    def on_started(ctx: ServerContext, port: int) -> None:
        started.set_result((ctx, port))

    task = asyncio.create_task(run_server(settings, {"slack"}, "127.0.0.1", 0, stop_event=stop, started=on_started))
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    ctx, port = started.result()
    return ctx, port, stop, task


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    server = await FakeSlack(TOKEN, APP_TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
async def slack_env(db_url: str, campaign: str, fake: FakeSlack, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackEnv]:
    """`labelbot serve slack` on a migrated database with the `demo` campaign (channel C123)."""
    monkeypatch.setattr(poster, "CHANNEL_INTERVAL_S", 0.0)
    monkeypatch.setattr(listeners, "UPDATE_INTERVAL_S", 0.0)
    settings = slack_settings(db_url, fake, tmp_path)
    ctx, port, stop, task = await start_server(settings)
    async with aiohttp.ClientSession() as http:
        yield SlackEnv(fake, ctx, port, http, settings)
    stop.set()
    await asyncio.wait_for(task, 30)
