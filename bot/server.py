"""`labelbot serve`: one asyncio process running the HTTP server, the bots and the scheduler.

Each component is a starter `async def start(ctx) -> stop` looked up lazily in COMPONENTS, so a
process that serves only Discord never imports slack_bolt and the other way round. HTTP routes
(Slack's /slack/events, /healthz, the dashboard) are added to one aiohttp application before it
starts listening.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.core import hooks
from bot.core.errors import InvalidInput
from bot.core.service import LabelingService
from storage.db import Database

log = logging.getLogger("labelbot.server")

KNOWN_COMPONENTS = ("slack", "discord", "scheduler", "web")
SHUTDOWN_TIMEOUT_S = 20.0  # how long SIGTERM waits for in-flight requests and votes (Kubernetes allows 30 s)
Stop = Callable[[], Awaitable[None]]

# component -> "module:function"; the function is `async def start(ctx: ServerContext) -> Stop`.
COMPONENTS: dict[str, str] = {
    "web": "bot.web:start",
    "scheduler": "scheduler.app:start",
    "slack": "bot.adapters.slack.app:start",
    "discord": "bot.adapters.discord.client:start",
}


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    service: LabelingService
    app: web.Application
    health: dict[str, Callable[[], bool]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


def resolve_components(cfg: Settings, wanted: set[str]) -> list[str]:
    """Components to run: the named ones, or every configured one when none is named."""
    if wanted:
        if "slack" in wanted and not cfg.slack_configured:
            raise InvalidInput("Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see .env.example).")
        if "discord" in wanted and not cfg.discord_configured:
            raise InvalidInput("Discord needs DISCORD_BOT_TOKEN (see .env.example).")
        chosen = set(wanted)
    else:
        chosen = {"web"} | ({"scheduler"} if "scheduler" in COMPONENTS else set())
        if cfg.slack_configured:
            chosen.add("slack")
        if cfg.discord_configured:
            chosen.add("discord")
    missing = [c for c in chosen if c not in COMPONENTS]
    if missing:
        raise InvalidInput(f"This build of labelbot has no {', '.join(sorted(missing))} component.")
    if chosen & {"slack"}:
        chosen.add("web")  # Slack's endpoint lives on the HTTP server
    return [c for c in KNOWN_COMPONENTS if c in chosen and c != "web"] + (["web"] if "web" in chosen else [])


class PortInUse(InvalidInput):
    """The HTTP port cannot be bound (taken by another process, or privileged)."""


def port_problem(host: str, port: int, exc: OSError, hint: str) -> PortInUse:
    if exc.errno == errno.EACCES:
        return PortInUse(f"Port {port} on {host} needs administrator rights; {hint}.")
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"Port {port} on {host} is already in use (is labelbot already running?); {hint}.")
    return PortInUse(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); {hint}.")


def check_port(host: str, port: int, hint: str = "choose another with --port or LABELBOT_PORT") -> None:
    """Fail fast, with one line, when the HTTP port cannot be bound (before any component starts)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUse(f"Cannot listen on {host}:{port}: unknown host ({exc.strerror}).") from exc
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name == "posix":  # as aiohttp does: a port in TIME_WAIT is free, one with a listener is not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise port_problem(host, port, exc, hint) from exc


def _load(name: str) -> Callable[[ServerContext], Awaitable[Stop]]:
    module, func = COMPONENTS[name].split(":")
    return getattr(importlib.import_module(module), func)


def freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the garbage collector's reach (`gc.freeze`).

    Modules, classes, settings and library caches built at start-up (~150k objects) never become
    garbage, yet every full collection walks them while holding the GIL: measured pauses of up to
    100 ms that stalled interaction acknowledgements under load. Frozen, they are skipped. Done by
    the `serve` process only (not by code embedding `run_server`, such as the tests).
    """
    gc.collect()
    gc.freeze()


async def run_server(cfg: Settings, wanted: set[str], host: str, port: int, *,
                     stop_event: asyncio.Event | None = None,
                     started: Callable[[ServerContext, int], None] | None = None) -> None:
    """Start the chosen components, serve until `stop_event` is set, then stop them in reverse."""
    names = resolve_components(cfg, wanted)
    db = Database(cfg.database_url)
    ctx = ServerContext(cfg, db, LabelingService(db, cfg.admins), web.Application())
    stops: list[Stop] = []
    runner: web.AppRunner | None = None
    stop_event = stop_event or asyncio.Event()
    try:
        for name in names:
            stops.append(await _load(name)(ctx))
            log.info("component started: %s", name)
        runner = web.AppRunner(ctx.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # taken between check_port and now
            raise port_problem(host, port, exc, "choose another with --port or LABELBOT_PORT") from exc
        bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
        log.info("listening on http://%s:%s (%s)", host, bound, ", ".join(names))
        if started:
            started(ctx, bound)
        await stop_event.wait()
    finally:
        # Graceful order: stop listening and let in-flight HTTP requests finish (up to SHUTDOWN_TIMEOUT_S),
        # let votes already being written commit, then stop components in reverse (the scheduler
        # releases its leader lock in its stop), then close the database.
        log.info("shutting down")
        if runner is not None:
            await runner.cleanup()
        if not await asyncio.to_thread(hooks.wait_idle, SHUTDOWN_TIMEOUT_S):
            log.warning("gave up waiting for %d in-flight vote(s)", hooks.votes_in_flight())
        for stop in reversed(stops):
            try:
                await stop()
            except Exception:
                log.exception("error while stopping a component")
        db.dispose()


def serve_forever(cfg: Settings, wanted: set[str], host: str, port: int, *,
                  started: Callable[[ServerContext, int], None] | None = None,
                  port_hint: str = "choose another with --port or LABELBOT_PORT") -> None:
    """Blocking entry point used by the CLI; SIGINT/SIGTERM stop it gracefully. `started` runs once listening."""
    from bot.logging_setup import configure

    resolve_components(cfg, wanted)  # fail fast, before the event loop starts
    check_port(host, port, port_hint)  # one line, not a traceback, when the port is taken
    configure(cfg)  # JSON lines with request ids, secrets scrubbed

    def on_start(ctx: ServerContext, bound: int) -> None:
        if started:
            started(ctx, bound)
        freeze_startup_objects()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_server(cfg, wanted, host, port, stop_event=stop, started=on_start)

    asyncio.run(main())
