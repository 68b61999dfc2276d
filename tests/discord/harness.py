"""Runs the real Discord component (bot.adapters.discord.client.start) against the fake Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.config import Settings
from bot.core.service import LabelingService
from bot.server import ServerContext
from storage.db import Database
from tests.discord.fake_discord import FakeDiscord

ADMIN = 900000000000000001
USERS = [300000000000000000 + i for i in range(1, 100)]


@dataclass
class Bot:
    fake: FakeDiscord
    client: discord.Client
    service: LabelingService
    db: Database
    settings: Settings
    stop: Callable[[], Awaitable[None]]


def bot_settings(fake: FakeDiscord, db_url: str, **extra: Any) -> Settings:
    return Settings(database_url=db_url, discord_bot_token=fake.token, discord_api_url=fake.api_url,
                    discord_gateway_url=fake.gateway_url, labelbot_admins=f"discord:{ADMIN}",
                    labelbot_export_dir=extra.pop("export_dir", "exports"), **extra)


async def start_bot(fake: FakeDiscord, db_url: str, **extra: Any) -> Bot:
    from bot.adapters.discord.client import start

    settings = bot_settings(fake, db_url, **extra)
    db = Database(db_url)
    service = LabelingService(db, settings.admins, seed=1)
    ctx = ServerContext(settings, db, service, web.Application(),
                        extras={"discord_client_options": {"guild_ready_timeout": 0.05}})
    stop = await start(ctx)
    client = ctx.extras["discord_client"]
    await asyncio.wait_for(client.wait_until_ready(), 15)

    async def stop_all() -> None:
        await stop()
        db.dispose()

    return Bot(fake, client, service, db, settings, stop_all)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    server = await FakeDiscord().start()
    yield server
    await server.stop()
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def bot(fake: FakeDiscord, db_url: str, campaign: str, tmp_path: Any) -> AsyncIterator[Bot]:
    running = await start_bot(fake, db_url, export_dir=str(tmp_path / "exports"))
    yield running
    await running.stop()
