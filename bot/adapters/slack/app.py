"""Wiring: slack-bolt's AsyncApp on `labelbot serve`'s aiohttp server at POST /slack/events, plus Socket
Mode when SLACK_APP_TOKEN is set.

One URL serves events, interactivity and slash commands. The signature is checked before the body is
parsed (forged or stale requests get 401 and touch nothing; Bolt checks it again), a body that cannot
be parsed gets 400, and listeners ack before doing any work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.config import Settings
from bot.core import hooks
from bot.core.errors import InvalidInput
from bot.server import ServerContext, Stop

from .listeners import SlackHandlers
from .poster import make_client
from .translate import PLATFORM, envelope_problem

log = logging.getLogger("labelbot.slack")

EVENTS_PATH = "/slack/events"
SOCKET_CONNECT_WAIT_S = 10.0


def build_bolt_app(settings: Settings, client: Any) -> AsyncApp:
    """The Bolt app: signature verification on, listeners ack themselves and return at once."""
    if settings.slack_signing_secret is None:
        raise InvalidInput("Slack needs SLACK_SIGNING_SECRET (see .env.example).")
    return AsyncApp(
        name="labelbot",
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=True,  # our listeners only ack and spawn work, so this adds no latency
        request_verification_enabled=True,
        logger=logging.getLogger("labelbot.slack.bolt"),
    )


def events_route(bolt: AsyncApp, settings: Settings) -> Any:
    """The aiohttp handler for POST /slack/events."""
    assert settings.slack_signing_secret is not None
    verifier = SignatureVerifier(settings.slack_signing_secret.get_secret_value())

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.json_response({"ok": False, "error": "invalid_signature"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string,
                                            headers=dict(request.headers))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response({"ok": False, "error": "bad_payload", "detail": type(exc).__name__},
                                     status=400)
        problem = envelope_problem(bolt_request.body) if isinstance(bolt_request.body, dict) else "body"
        if problem:
            return web.json_response({"ok": False, "error": "bad_payload", "detail": problem}, status=400)
        bolt_response = await bolt.async_dispatch(bolt_request)
        if bolt_response.status >= 500:
            log.warning("slack request answered %s", bolt_response.status)
        return await to_aiohttp_response(bolt_response)

    return handle


def socket_mode_handler(bolt: AsyncApp, settings: Settings, client: Any) -> Any:
    """The Socket Mode handler (aiohttp websocket) when SLACK_APP_TOKEN is set, else None."""
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    if not app_token.strip():
        return None
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    return AsyncSocketModeHandler(bolt, app_token.strip(), web_client=client,
                                  logger=logging.getLogger("labelbot.slack.socket"))


def socket_connected(socket: Any) -> bool:
    session = getattr(socket.client, "current_session", None)
    return session is not None and not session.closed


async def start(ctx: ServerContext) -> Stop:
    """`labelbot serve slack`: mount POST /slack/events and, with SLACK_APP_TOKEN, connect Socket Mode."""
    settings = ctx.settings
    if not settings.slack_configured:
        raise InvalidInput("Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see .env.example).")
    session = aiohttp.ClientSession()
    client = make_client(settings, session)
    bolt = build_bolt_app(settings, client)
    handlers = SlackHandlers(ctx.service, settings, client, session=session)
    handlers.register(bolt)
    ctx.app.router.add_post(EVENTS_PATH, events_route(bolt, settings))
    socket = socket_mode_handler(bolt, settings, client)
    connecting: asyncio.Task[Any] | None = None
    if socket is not None:
        # The SDK retries a failed connection forever; don't let that block the HTTP server's start.
        connecting = asyncio.ensure_future(socket.connect_async())
        await asyncio.wait({connecting}, timeout=SOCKET_CONNECT_WAIT_S)
        if socket_connected(socket):
            log.info("slack: socket mode connected")
        else:
            log.error("slack: socket mode is not connected (check SLACK_APP_TOKEN); retrying in the background")
    ctx.extras["slack"] = handlers
    ctx.extras["slack_socket"] = socket
    ctx.health["slack"] = lambda: socket is None or socket_connected(socket)
    loop = asyncio.get_running_loop()

    def voted_elsewhere(result: Any, platform: str) -> None:
        """A vote through Discord (same process) changed an item: its Slack messages and threads follow."""
        if platform != PLATFORM and not loop.is_closed():
            loop.call_soon_threadsafe(handlers.voted_elsewhere, result)

    hooks.add_item_observer(voted_elsewhere)

    async def stop() -> None:
        hooks.remove_item_observer(voted_elsewhere)
        if socket is not None:
            await socket.close_async()
        if connecting is not None and not connecting.done():
            connecting.cancel()
        await handlers.drain()
        handlers.close()
        await session.close()

    return stop

