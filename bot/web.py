"""The HTTP component: health check (the dashboard and metrics join it later)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from bot.server import ServerContext, Stop


async def start(ctx: ServerContext) -> Stop:
    async def healthz(_request: web.Request) -> web.Response:
        checks: dict[str, bool] = {}

        def db_ok() -> bool:
            try:
                with ctx.db.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return True
            except Exception:
                return False

        checks["database"] = await asyncio.to_thread(db_ok)
        for name, probe in ctx.health.items():
            checks[name] = bool(probe())
        ok = all(checks.values())
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)

    ctx.app.router.add_get("/healthz", healthz)

    async def stop() -> None:
        return None

    return stop
