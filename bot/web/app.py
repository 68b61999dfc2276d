"""aiohttp wiring of the HTTP component: /healthz, /metrics, the admin dashboard, and the middleware that
gives every request an id, a log line and a latency sample.

The dashboard is read-only and server-rendered (jinja2 + inline SVG); every page but the login page
needs a session cookie (from the admin token or a one-time `/label dashboard` link) or
`Authorization: Bearer <LABELBOT_DASHBOARD_TOKEN>`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import text

from bot import metrics
from bot.core.errors import LabelingError, NotFound
from bot.core.events import Actor
from bot.logging_setup import Redactor, new_request_id, request_id, secret_values
from bot.server import ServerContext, Stop
from bot.web import auth, data, svg

log = logging.getLogger("labelbot.web")

TEMPLATES = Path(__file__).parent / "templates"
QUIET_ROUTES = {"/healthz", "/metrics"}
WHO = web.AppKey("labelbot_who", str)

_env: Environment | None = None


def templates() -> Environment:
    global _env
    if _env is None:
        env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                          trim_blocks=True, lstrip_blocks=True)
        env.globals.update(svg=svg, fmt_date=data.fmt_date, pct=_pct, num=_num)
        _env = env
    return _env


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request id (kept from X-Request-Id when well-formed), latency histogram per route, one log line."""
    rid = new_request_id(request.headers.get("X-Request-Id"))
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        metrics.http_request(request.method, route, status, elapsed)
        if route == "/slack/events":  # Slack acks with the HTTP response: this is the ack latency
            metrics.ack_latency("slack", elapsed)
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        # the path only: a query string may hold a sign-in token
        log.log(level, "%s %s %s", request.method, request.path, status,
                extra={"route": route, "status": status, "ms": round(elapsed * 1000, 2)})
        request_id.reset(token)


def security_headers(response: web.StreamResponse, script_nonce: str | None = None) -> None:
    script = f"'nonce-{script_nonce}'" if script_nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; "
        f"frame-ancestors 'none'; base-uri 'none'; script-src {script}")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"


def safe_next(value: str | None) -> str:
    """Only local dashboard paths are valid redirect targets (no open redirect)."""
    if value and value.startswith("/dashboard") and "//" not in value and "\\" not in value:
        return value
    return "/dashboard"


class Dashboard:
    """Handlers of the dashboard routes (state: settings, service, data layer, signing key)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.key = auth.signing_key(ctx.settings)
        self.data = data.DashboardData(ctx.db, redactor=Redactor(secret_values(ctx.settings)))
        self.secure_cookie = (ctx.settings.labelbot_public_url or "").startswith("https://")

    # ------------------------------------------------------------------ rendering

    def page(self, name: str, *, status: int = 200, script_nonce: str | None = None, **values: Any) -> web.Response:
        html = templates().get_template(name).render(**values)
        resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        security_headers(resp, script_nonce)
        return resp

    def login_page(self, *, error: str | None = None, status: int = 401, next_path: str = "/dashboard") -> web.Response:
        return self.page("login.html", status=status, error=error, next=next_path, signed_in=False,
                         token_configured=auth.admin_token_set(self.settings))

    def error_page(self, who: str, status: int, title: str, message: str) -> web.Response:
        return self.page("error.html", status=status, title=title, message=message, signed_in=True, who=who)

    # ------------------------------------------------------------------ access

    async def who(self, request: web.Request) -> str | None:
        """The signed-in subject ('admin token' or an admin's platform:user), or None."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and auth.token_matches(self.settings, header[7:].strip()):
            return "admin token"
        cookie = request.cookies.get(auth.COOKIE)
        if not cookie or self.key is None:
            return None
        try:
            payload = auth.verify(self.key, cookie, "session")
        except auth.BadToken:
            return None
        subject = str(payload.get("sub", ""))
        if subject == "admin token":
            return subject
        if ":" not in subject:
            return None
        platform, user = subject.split(":", 1)
        if platform == "cli":  # sign-in links are minted for Slack and Discord admins only
            return None
        if payload.get("pa"):  # the platform vouched for this admin when the link was made (signed claim)
            return subject
        still_admin = await asyncio.to_thread(self.ctx.service.is_admin, Actor(platform, "", user))
        return subject if still_admin else None

    def start_session(self, subject: str, next_path: str, *, platform_admin: bool = False) -> web.HTTPSeeOther:
        """A redirect that sets the session cookie (raise it)."""
        assert self.key is not None
        resp = web.HTTPSeeOther(safe_next(next_path))
        session = auth.make_session(self.key, subject, platform_admin=platform_admin)
        resp.set_cookie(auth.COOKIE, session, max_age=auth.SESSION_TTL_S,
                        httponly=True, samesite="Lax", secure=self.secure_cookie, path="/")
        security_headers(resp)
        return resp

    async def login_form(self, request: web.Request) -> web.Response:
        if await self.who(request):
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        return self.login_page(status=200, next_path=safe_next(request.query.get("next")))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        next_path = safe_next(str(form.get("next", "")))
        if self.key is not None and auth.token_matches(self.settings, str(form.get("token", ""))):
            log.info("dashboard sign-in with the admin token")
            raise self.start_session("admin token", next_path)
        await asyncio.sleep(0.3)  # slows guessing; the comparison itself is constant-time
        return self.login_page(error="That token is not right.", next_path=next_path)

    async def signin_form(self, request: web.Request) -> web.Response:
        """A GET only shows a button (link previews must not burn the one-time link); a tiny script
        presses it for people, so a click in chat lands on the dashboard."""
        token = request.query.get("t", "")
        if self.key is None or not token:
            return self.login_page(error="This sign-in link is not valid.")
        try:
            auth.verify(self.key, token, "signin")
        except auth.BadToken as exc:
            return self.login_page(error=exc.message)
        nonce = secrets.token_urlsafe(12)
        next_path = safe_next(request.query.get("next"))
        html = templates().from_string(SIGNIN_PAGE).render(token=token, next=next_path, nonce=nonce)
        resp = web.Response(text=html, content_type="text/html", charset="utf-8")
        security_headers(resp, nonce)
        return resp

    async def signin(self, request: web.Request) -> web.Response:
        form = await request.post()
        token, next_path = str(form.get("t", "")), safe_next(str(form.get("next", "")))
        if self.key is None:
            return self.login_page(error="This sign-in link is not valid.")
        try:
            payload = auth.verify(self.key, token, "signin")
            subject, vouched = str(payload["sub"]), bool(payload.get("pa"))
            await asyncio.to_thread(self._redeem, subject, str(payload.get("n", "")), vouched)
        except LabelingError as exc:
            return self.login_page(error=exc.message)
        log.info("dashboard sign-in by link", extra={"subject": subject})
        raise self.start_session(subject, next_path, platform_admin=vouched)

    def _redeem(self, subject: str, nonce: str, vouched: bool) -> None:
        """Claim the link's nonce once (atomic insert), for someone who is still an admin."""
        from storage import queries as q

        platform, _, user = subject.partition(":")
        if not nonce or platform in ("", "cli"):
            raise auth.BadToken("This sign-in link is not valid.")
        if not vouched and not self.ctx.service.is_admin(Actor(platform, "", user)):
            raise auth.BadToken("This sign-in link is not valid.")
        with self.ctx.db.write() as s:
            if not q.claim_delivery(s, f"dashboard-signin:{nonce}", "dashboard.signin"):
                raise auth.BadToken("This sign-in link was already used; ask for a new one with `/label dashboard`.")
            q.add_audit(s, subject, "dashboard.signin")

    async def logout(self, _request: web.Request) -> web.Response:
        resp = web.HTTPSeeOther("/dashboard/login")
        resp.del_cookie(auth.COOKIE, path="/")
        security_headers(resp)
        raise resp

    async def guard(self, request: web.Request) -> str:
        who = await self.who(request)
        if who is None:
            if request.path.endswith(".png") or "/files/" in request.path:
                raise web.HTTPUnauthorized(text="Sign in to the dashboard first.")
            page = self.login_page(next_path=safe_next(quote(request.path_qs, safe="/?=&")))
            raise web.HTTPUnauthorized(text=page.text, content_type="text/html",
                                       headers={k: v for k, v in page.headers.items() if k != "Content-Type"})
        return who

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.Response:
        who = await self.guard(request)
        campaigns, runs = await asyncio.to_thread(lambda: (self.data.campaigns(14), self.data.job_runs(None, 20)))
        return self.page("index.html", campaigns=campaigns, job_runs=runs, days=14, signed_in=True, who=who)

    async def campaign(self, request: web.Request) -> web.Response:
        who = await self.guard(request)
        name = request.match_info["name"]

        def load() -> dict[str, Any]:
            stats = self.data.stats(name)
            jobs = self.data.finetune_jobs(name)
            comparison = data.method_comparison(jobs or [])
            return {"stats": stats, "quality": self.data.quality(name),
                    "votes_per_day": self.data.votes_per_day(name, 30), "exports": self.data.exports(name),
                    "flags": self.data.flags(name),
                    "finetune": jobs, "comparison": comparison,
                    "comparison_png": any("eval_accuracy" in r for r in comparison),
                    "job_runs": self.data.job_runs(name, 20), "age_s": self.data.computed_at("quality", name)}

        try:
            values = await asyncio.to_thread(load)
        except NotFound as exc:
            return self.error_page(who, 404, "Not found", exc.message)
        return self.page("campaign.html", signed_in=True, who=who, **values)

    async def leaderboard_png(self, request: web.Request) -> web.Response:
        await self.guard(request)
        name = request.match_info["name"]

        def draw() -> bytes | None:
            from bot.charts import leaderboard_png

            return leaderboard_png(name, self.data.stats(name).leaderboard)

        return await self._png(draw)

    async def finetune_png(self, request: web.Request) -> web.Response:
        await self.guard(request)
        name = request.match_info["name"]

        def draw() -> bytes | None:
            from bot.charts import finetune_png

            return finetune_png(data.method_comparison(self.data.finetune_jobs(name) or []))

        return await self._png(draw)

    async def _png(self, draw: Any) -> web.Response:
        try:
            body = await asyncio.to_thread(draw)
        except NotFound as exc:
            raise web.HTTPNotFound(text=exc.message) from exc
        if body is None:
            raise web.HTTPNotFound(text="Nothing to chart yet.")
        resp = web.Response(body=body, content_type="image/png")
        security_headers(resp)
        return resp

    async def export_file(self, request: web.Request) -> web.StreamResponse:
        await self.guard(request)
        try:
            export_id = int(request.match_info["id"])
        except ValueError as exc:
            raise web.HTTPNotFound() from exc
        filename = request.match_info["filename"]
        record = await asyncio.to_thread(self.data.export_record, export_id)
        if record is None or "/" in filename or "\\" in filename or filename.startswith("."):
            raise web.HTTPNotFound(text="No such export file.")
        folder = Path(record.path).resolve()
        path = (folder / filename).resolve()
        if path.parent != folder or not path.is_file():
            raise web.HTTPNotFound(text="No such export file.")
        resp = web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})
        security_headers(resp)
        return resp


SIGNIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>Signing in · labelbot</title></head>
<body style="font: 15px system-ui, sans-serif; max-width: 420px; margin: 80px auto;">
<h1>labelbot dashboard</h1>
<form id="signin" method="post" action="/dashboard/signin">
<input type="hidden" name="t" value="{{ token }}"><input type="hidden" name="next" value="{{ next }}">
<button type="submit">Continue to the dashboard</button></form>
<script nonce="{{ nonce }}">document.getElementById("signin").submit();</script>
</body></html>"""


async def start(ctx: ServerContext) -> Stop:
    metrics.install()
    dash = Dashboard(ctx)
    ctx.extras["dashboard"] = dash  # the voting page (bot/adapters/web) asks it who an admin is
    app = ctx.app
    app.middlewares.append(observe)

    async def healthz(_request: web.Request) -> web.Response:
        def db_ok() -> bool:
            try:
                with ctx.db.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return True
            except Exception:
                return False

        checks: dict[str, bool] = {"database": await asyncio.to_thread(db_ok)}
        for name, probe in ctx.health.items():
            try:
                checks[name] = bool(probe())
            except Exception:
                checks[name] = False
        ok = all(checks.values())
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)

    async def metrics_page(_request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    async def root(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/", root)
    app.router.add_get("/dashboard", dash.index)
    app.router.add_get("/dashboard/login", dash.login_form)
    app.router.add_post("/dashboard/login", dash.login)
    app.router.add_get("/dashboard/signin", dash.signin_form)
    app.router.add_post("/dashboard/signin", dash.signin)
    app.router.add_post("/dashboard/logout", dash.logout)
    app.router.add_get("/dashboard/campaigns/{name}", dash.campaign)
    app.router.add_get("/dashboard/campaigns/{name}/leaderboard.png", dash.leaderboard_png)
    app.router.add_get("/dashboard/campaigns/{name}/finetune.png", dash.finetune_png)
    app.router.add_get("/dashboard/exports/{id}/files/{filename}", dash.export_file)
    if dash.key is None:
        log.warning("dashboard locked: no LABELBOT_DASHBOARD_TOKEN and no Slack/Discord secret to sign links with")

    async def stop() -> None:
        return None

    return stop
