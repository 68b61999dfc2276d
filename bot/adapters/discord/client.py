"""The Discord component of `labelbot serve`: a discord.py client over the labeling core.

- `DISCORD_API_URL` / `DISCORD_GATEWAY_URL` override discord.py's REST base (`Route.BASE`) and gateway
  (`DiscordWebSocket.DEFAULT_GATEWAY`) for proxies and tests.
- `DISCORD_SHARD_COUNT` (and optionally `DISCORD_SHARD_IDS`, e.g. `0-3` or `0,2`) runs an
  `AutoShardedClient`; otherwise a plain `Client`. Rate limits are discord.py's job (its per-bucket
  limiter waits out 429s); labelbot never retries a request in a loop of its own.
- Intents: guilds (channel cache, threads), guild messages and message content (thread replies become
  comments; Message Content is a privileged intent to switch on in the developer portal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.adapters.discord import components, translate
from bot.adapters.discord.handlers import Handlers
from bot.config import Settings
from bot.core import hooks
from bot.core.errors import InvalidInput
from bot.core.service import LabelingService

log = logging.getLogger("labelbot.discord")

API_VERSION = 10
SWITCH_INTERVAL = 0.0005  # seconds; see start()


def apply_overrides(settings: Settings) -> None:
    """Point discord.py at DISCORD_API_URL / DISCORD_GATEWAY_URL when set (process-wide in discord.py)."""
    if settings.discord_api_url:
        base = settings.discord_api_url.rstrip("/")
        if "/api/v" not in base:
            base = f"{base}/api/v{API_VERSION}"
        Route.BASE = base
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.message_content = True
    return wanted


class _LabelBot:
    """Behaviour shared by the plain and the auto-sharded client."""

    labelbot: Handlers
    tree: app_commands.CommandTree[Any]
    sync_commands: bool

    def _setup_labelbot(self, service: LabelingService, settings: Settings, sync_commands: bool) -> None:
        self.labelbot = Handlers(self, service, settings)  # type: ignore[arg-type]
        self.tree = app_commands.CommandTree(self)  # type: ignore[arg-type]
        self.tree.add_command(label_group())
        self.sync_commands = sync_commands

    async def setup_hook(self) -> None:
        # Persistent buttons: registered before the gateway connects, so clicks on messages posted
        # before this process started are handled.
        self.add_dynamic_items(*components.DYNAMIC_ITEMS)  # type: ignore[attr-defined]
        if self.sync_commands:
            try:
                await self.tree.sync()
            except discord.HTTPException as exc:
                log.warning("could not register the /label commands: %s %s", exc.status, exc.code)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.modal_submit:
            await self.labelbot.modal_submit(interaction)

    async def on_message(self, message: discord.Message) -> None:
        await self.labelbot.thread_message(message)

    async def close(self) -> None:
        await self.labelbot.batcher.close()
        await self.labelbot.refresher.drain()
        await super().close()  # type: ignore[misc]


class LabelBot(_LabelBot, discord.Client):
    def __init__(self, service: LabelingService, settings: Settings, *, sync_commands: bool = True,
                 **options: Any) -> None:
        discord.Client.__init__(self, intents=intents(), **options)
        self._setup_labelbot(service, settings, sync_commands)


class ShardedLabelBot(_LabelBot, discord.AutoShardedClient):
    def __init__(self, service: LabelingService, settings: Settings, *, sync_commands: bool = True,
                 **options: Any) -> None:
        discord.AutoShardedClient.__init__(self, intents=intents(), **options)
        self._setup_labelbot(service, settings, sync_commands)


def build_client(settings: Settings, service: LabelingService, *, sync_commands: bool = True,
                 **options: Any) -> discord.Client:
    """A plain client, or an auto-sharded one when DISCORD_SHARD_COUNT is set (options go to discord.py)."""
    count = settings.discord_shard_count
    ids = translate.split_shard_ids(settings.discord_shard_ids, count)
    if count is not None:
        if count < 1:
            raise InvalidInput("DISCORD_SHARD_COUNT must be at least 1.")
        return ShardedLabelBot(service, settings, sync_commands=sync_commands, shard_count=count, shard_ids=ids,
                               **options)
    return LabelBot(service, settings, sync_commands=sync_commands, **options)


def _handlers(interaction: discord.Interaction) -> Handlers:
    return interaction.client.labelbot  # type: ignore[attr-defined]


CAMPAIGN = "campaign name (default: this channel's campaign)"


def label_group() -> app_commands.Group:
    """`/label <sub>`: the same subcommands as Slack, each handed to the shared dispatcher as text."""
    group = app_commands.Group(name="label", description="labelbot: label model responses")

    async def run(interaction: discord.Interaction, *words: Any) -> None:
        await _handlers(interaction).command(interaction, translate.command_text(*words))

    @group.command(name="next", description="Get the next item to label (privately)")
    @app_commands.describe(campaign=CAMPAIGN)
    async def next_(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "next", campaign)

    @group.command(name="stats", description="Campaign progress and agreement")
    @app_commands.describe(campaign=CAMPAIGN)
    async def stats(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "stats", campaign)

    @group.command(name="leaderboard", description="Model leaderboard (Bradley–Terry, 95% intervals)")
    @app_commands.describe(campaign=CAMPAIGN)
    async def leaderboard(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "leaderboard", campaign)

    @group.command(name="guidelines", description="The labeling guidelines")
    @app_commands.describe(campaign=CAMPAIGN)
    async def guidelines(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "guidelines", campaign)

    @group.command(name="help", description="What /label can do")
    async def help_(interaction: discord.Interaction) -> None:
        await run(interaction, "help")

    @group.command(name="link", description="Link your Discord and Slack accounts (one person, one annotator)")
    @app_commands.describe(code="the code `/label link` showed on your other account; leave empty to get one")
    async def link(interaction: discord.Interaction, code: str | None = None) -> None:
        await run(interaction, "link", code)

    @group.command(name="post", description="Admin: post the next N items to the campaign's channel")
    @app_commands.describe(n="how many items (1-50)", campaign=CAMPAIGN)
    async def post(interaction: discord.Interaction, n: app_commands.Range[int, 1, 50],
                   campaign: str | None = None) -> None:
        await run(interaction, "post", n, campaign)

    @group.command(name="export", description="Admin: write a dataset export")
    @app_commands.describe(format="trl, trl-conversational or votes", campaign=CAMPAIGN)
    async def export(interaction: discord.Interaction, format: str = "trl", campaign: str | None = None) -> None:
        await run(interaction, "export", format, campaign)

    @group.command(name="pause", description="Admin: pause the campaign")
    @app_commands.describe(campaign=CAMPAIGN)
    async def pause(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "pause", campaign)

    @group.command(name="resume", description="Admin: resume the campaign")
    @app_commands.describe(campaign=CAMPAIGN)
    async def resume(interaction: discord.Interaction, campaign: str | None = None) -> None:
        await run(interaction, "resume", campaign)

    admin = app_commands.Group(name="admin", description="Admin: manage labelbot admins", parent=group)

    @admin.command(name="add", description="Admin: make someone a labelbot admin")
    async def admin_add(interaction: discord.Interaction, user: discord.User) -> None:
        await run(interaction, "admin", "add", f"<@{user.id}>")

    return group


async def start(ctx: Any) -> Any:
    """`labelbot serve discord`: log in (fails fast on a bad token), then run the gateway in the background."""
    cfg: Settings = ctx.settings
    if cfg.discord_bot_token is None:
        raise InvalidInput("Discord needs DISCORD_BOT_TOKEN (see .env.example).")
    apply_overrides(cfg)
    # Database work runs in threads; with CPython's default 5 ms GIL switch interval each wake-up of
    # the event loop can wait that long behind an ORM-heavy commit, which adds up under bursts of
    # clicks. A shorter interval keeps the first response to an interaction prompt.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    client = build_client(cfg, ctx.service, **ctx.extras.get("discord_client_options", {}))
    try:
        await client.login(cfg.discord_bot_token.get_secret_value())
    except discord.LoginFailure as exc:
        await client.close()
        raise InvalidInput("Discord rejected DISCORD_BOT_TOKEN (401). Copy the bot token again.") from exc
    except Exception:
        await client.close()
        raise

    async def run() -> None:
        try:
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            log.error("Discord refused the Message Content intent: enable it for the bot in the developer portal")
        except Exception:
            log.exception("the Discord gateway connection ended")

    task = asyncio.create_task(run(), name="labelbot-discord-gateway")
    ctx.extras["discord_client"] = client
    ctx.health["discord"] = lambda: client.is_ready() and not client.is_closed()
    loop = asyncio.get_running_loop()

    def voted_elsewhere(result: Any, platform: str) -> None:
        """A vote through Slack (same process) changed an item: its Discord messages and threads follow."""
        if platform != translate.PLATFORM and not loop.is_closed():
            loop.call_soon_threadsafe(client.labelbot.voted_elsewhere, result)  # type: ignore[attr-defined]

    hooks.add_item_observer(voted_elsewhere)

    async def stop() -> None:
        hooks.remove_item_observer(voted_elsewhere)
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return stop
