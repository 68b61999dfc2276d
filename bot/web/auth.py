"""Dashboard access: signed, expiring tokens made with hmac + time (no extra dependency).

Two kinds of token, both `base64url(json payload).base64url(hmac-sha256)`:
- sign-in links (`/label dashboard`): 15 minutes, one use (their nonce is claimed in the Delivery
  table, an atomic insert-or-nothing on SQLite and PostgreSQL), for one admin;
- session cookies: 12 hours, set after a sign-in link or the admin token (LABELBOT_DASHBOARD_TOKEN).

The signing key is derived from the configured secrets, so every process of one deployment agrees
on it without another setting; rotating any of those secrets signs everybody out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from bot.core.errors import InvalidInput

SIGNIN_TTL_S = 15 * 60
SESSION_TTL_S = 12 * 3600
COOKIE = "lb_session"


class BadToken(InvalidInput):
    """A token that is forged, expired, for the wrong purpose, or already used."""


def signing_key(settings: Settings) -> bytes | None:
    """Key for dashboard tokens, or None when no secret is configured (the dashboard stays locked)."""
    parts = [settings.labelbot_dashboard_token, settings.slack_signing_secret, settings.slack_bot_token,
             settings.discord_bot_token]
    material = [p.get_secret_value() for p in parts if p is not None and p.get_secret_value()]
    if not material:
        return None
    h = hashlib.sha256(b"labelbot-dashboard-key-v1")
    for value in material:
        h.update(b"\0" + value.encode())
    return h.digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(key: bytes, token: str, purpose: str, *, now: float | None = None) -> dict[str, Any]:
    """The payload of a valid token for `purpose`; BadToken otherwise (never says which check failed)."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadToken("This link is not valid.")
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError) as exc:
        raise BadToken("This link is not valid.") from exc
    if not isinstance(payload, dict) or payload.get("p") != purpose:
        raise BadToken("This link is not valid.")
    if float(payload.get("exp", 0)) < (time.time() if now is None else now):
        raise BadToken("This link has expired; ask for a new one with `/label dashboard`.")
    return payload


@dataclass(frozen=True)
class SignInLink:
    url: str
    token: str
    expires_in_s: int


def make_signin_link(settings: Settings, actor_key: str, *, platform_admin: bool = False,
                     now: float | None = None) -> SignInLink:
    """A one-time link to the dashboard for the admin `actor_key` (platform:user).

    `platform_admin`: the platform itself vouched for this person (e.g. a Discord server administrator),
    which the dashboard cannot re-check later, so the signed token carries the claim."""
    key = signing_key(settings)
    if key is None:
        raise InvalidInput("The dashboard has no signing secret: set LABELBOT_DASHBOARD_TOKEN.")
    base = (settings.labelbot_public_url or "").strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InvalidInput("Set LABELBOT_PUBLIC_URL (the dashboard's public base URL, e.g. https://labelbot.example.com).")
    now = time.time() if now is None else now
    payload = {"p": "signin", "sub": actor_key, "n": secrets.token_urlsafe(12), "exp": int(now) + SIGNIN_TTL_S}
    if platform_admin:
        payload["pa"] = 1
    token = sign(key, payload)
    return SignInLink(f"{base}/dashboard/signin?t={token}", token, SIGNIN_TTL_S)


def make_session(key: bytes, subject: str, *, platform_admin: bool = False, now: float | None = None) -> str:
    now = time.time() if now is None else now
    payload: dict[str, Any] = {"p": "session", "sub": subject, "exp": int(now) + SESSION_TTL_S}
    if platform_admin:
        payload["pa"] = 1
    return sign(key, payload)


def admin_token_set(settings: Settings) -> bool:
    """LABELBOT_DASHBOARD_TOKEN is set and not empty (`.env.example` leaves it empty)."""
    token = settings.labelbot_dashboard_token
    return token is not None and bool(token.get_secret_value())


def token_matches(settings: Settings, offered: str) -> bool:
    """Constant-time comparison with LABELBOT_DASHBOARD_TOKEN (False when it is not set)."""
    configured = settings.labelbot_dashboard_token
    if configured is None or not configured.get_secret_value() or not offered:
        return False
    return hmac.compare_digest(configured.get_secret_value().encode(), offered.encode())
