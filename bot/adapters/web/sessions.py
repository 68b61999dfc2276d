"""Who is voting in this browser, and the guards every state-changing request passes.

Two ways in:
- a voter cookie (`lb_voter`), set when someone opens their invite link: signed like the link, scoped
  to the campaign's path, and re-checked against the invite row on every request (revoking the
  invite or letting it expire ends the session at once);
- an admin's dashboard session (whatever the dashboard accepts: its cookie or bearer token), who
  votes as a web annotator of their own.

Every POST must carry the session's CSRF token (an HMAC of the session credential) and come from our
own origin (`Origin`, or `Referer` when a browser sends no Origin); anything else is refused with
403 before a form field is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.core import invites
from bot.core.events import Actor
from bot.server import ServerContext
from storage.domain import Platform

VOTER_COOKIE = "lb_voter"
FLASH_COOKIE = "lb_flash"
DASHBOARD_WORKSPACE = "dashboard"
FLASH_TTL_S = 300
FLASH_MAX_CHARS = 3000  # a cookie holds about 4 KB
NONCE = re.compile(r"^[A-Za-z0-9_-]{8,40}$")


class Refused(Exception):
    """A request we refuse with `status` and a sentence for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Identity:
    actor: Actor
    label: str  # what the page says: "Signed in as ..."
    credential: str  # the cookie or token that authenticated this request (CSRF tokens are bound to it)
    admin: bool
    campaign: str | None  # the one campaign an invite is for; None for admins (any campaign)


def campaign_path(campaign: str) -> str:
    return f"/vote/{quote(campaign, safe='')}"


def dashboard_actor(subject: str) -> Actor:
    """An admin signed in to the dashboard votes as a web annotator named after their dashboard subject."""
    user = subject if len(subject) <= 64 else "sub#" + hashlib.sha256(subject.encode()).hexdigest()[:40]
    return Actor(Platform.WEB, DASHBOARD_WORKSPACE, user, subject)


class Sessions:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.db = ctx.service.db
        self.secure = (ctx.settings.labelbot_public_url or "").startswith("https://")
        self._key: bytes | None = None

    async def key(self) -> bytes:
        if self._key is None:
            self._key = await asyncio.to_thread(invites.signing_key, self.db)
        return self._key

    # ------------------------------------------------------------------ identity

    async def identity(self, request: web.Request, campaign: str | None) -> Identity | None:
        """The voter of this request for `campaign` (invite cookie first, then an admin's dashboard session)."""
        cookie = request.cookies.get(VOTER_COOKIE)
        if cookie and campaign is not None:
            try:
                payload = invites.verify(await self.key(), cookie, "voter")
                voter = await asyncio.to_thread(invites.voter, self.db, payload.get("i"))
            except invites.BadLink:
                voter = None
            if voter is not None and voter.campaign == campaign:
                label = voter.actor.display_name or "an invited voter"
                return Identity(voter.actor, label, cookie, False, voter.campaign)
        subject = await self.dashboard_subject(request)
        if subject:
            credential = request.cookies.get("lb_session") or request.headers.get("Authorization", "")
            return Identity(dashboard_actor(subject), f"{subject} (admin)", credential, True, None)
        return None

    async def dashboard_subject(self, request: web.Request) -> str | None:
        """Who the dashboard says is signed in (None when nobody, or when the dashboard is not running)."""
        dashboard = self.ctx.extras.get("dashboard")
        if dashboard is None:
            return None
        return await dashboard.who(request)

    async def voter_cookie(self, response: web.StreamResponse, voter: invites.Voter) -> None:
        expires = int(voter.expires_at.timestamp())
        value = invites.sign(await self.key(), {"p": "voter", "i": voter.invite_id, "exp": expires})
        response.set_cookie(VOTER_COOKIE, value, max_age=max(60, expires - int(time.time())), httponly=True,
                            samesite="Lax", secure=self.secure, path=campaign_path(voter.campaign))

    # ------------------------------------------------------------------ request guards

    async def csrf(self, who: Identity) -> str:
        return invites.mac(await self.key(), "csrf", who.credential)

    def check_origin(self, request: web.Request) -> None:
        """State-changing requests must come from a page of ours: Origin (or Referer) names this server."""
        offered = request.headers.get("Origin")
        if not offered or offered == "null":
            referer = request.headers.get("Referer", "")
            parts = urlsplit(referer)
            offered = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
        allowed = {f"{request.scheme}://{request.host}"}
        public = (self.ctx.settings.labelbot_public_url or "").strip()
        if public:
            parts = urlsplit(public)
            allowed.add(f"{parts.scheme}://{parts.netloc}")
        if offered not in allowed:
            raise Refused(403, "This request did not come from the voting page, so nothing was changed. "
                               "Reload the page and try again.")

    async def check_form(self, who: Identity, form: Any) -> None:
        token = str(form.get("csrf", ""))
        expected = await self.csrf(who)
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise Refused(403, "This form has expired (you may have signed in again meanwhile), so nothing was "
                               "changed. Reload the page and try again.")

    # ------------------------------------------------------------------ confirmations across the redirect

    async def set_flash(self, response: web.StreamResponse, campaign: str, post_id: int | None, lines: list[str], *,
                        ok: bool = True, ask_reason: bool = False) -> None:
        text = list(lines)
        total = sum(len(t) for t in text)
        if total > FLASH_MAX_CHARS:  # only long gold explanations get here; the page keeps the full guidelines
            i = max(range(len(text)), key=lambda n: len(text[n]))
            text[i] = text[i][: max(40, len(text[i]) - (total - FLASH_MAX_CHARS))].rstrip() + "…"
        payload = {"p": "flash", "post": post_id, "m": text, "ok": ok, "r": ask_reason,
                   "exp": int(time.time()) + FLASH_TTL_S}
        response.set_cookie(FLASH_COOKIE, invites.sign(await self.key(), payload), max_age=FLASH_TTL_S,
                            httponly=True, samesite="Lax", secure=self.secure, path=campaign_path(campaign))

    async def take_flash(self, request: web.Request, post_id: int | None) -> dict[str, Any] | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        try:
            payload = invites.verify(await self.key(), raw, "flash")
        except invites.BadLink:
            return None
        if payload.get("post") != post_id:
            return None
        return {"lines": [str(x) for x in payload.get("m") or []], "ok": bool(payload.get("ok")),
                "ask_reason": bool(payload.get("r"))}

    @staticmethod
    def clear_flash(response: web.StreamResponse, campaign: str) -> None:
        response.del_cookie(FLASH_COOKIE, path=campaign_path(campaign))
