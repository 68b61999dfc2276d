"""Invites to the browser voting page: one signed, expiring, revocable link per person.

An admin makes one with `labelbot invite --campaign C --name N` or `/label invite`. The link carries
`base64url(json {p, i, exp}).base64url(hmac-sha256)`: the invite's row id and expiry under a key that
is generated on first use and kept in the database (`app_secret`), so it works with nothing configured
(`labelbot demo`) and every process of a deployment agrees on it. A forged or altered link fails the
signature before the database is read; the row lets an admin revoke a link before it expires.

A voter is an annotator on the web platform. The same `--name` gives the same annotator, so sending
someone a fresh link keeps their votes together; an invite without a name is an anonymous person of
its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.errors import InvalidInput, NotFound, PermissionDenied
from bot.core.events import Actor
from storage import queries as q
from storage.db import Database
from storage.domain import Platform
from storage.models import Invite, utcnow

KEY_NAME = "web-signing-key-v1"
DEFAULT_DAYS = 30
MAX_DAYS = 365
MAX_NAME = 100
WORKSPACE = "invite"  # the annotator workspace of invited voters (admins voting from the dashboard: "dashboard")

_keys: dict[str, bytes] = {}


class BadLink(PermissionDenied):
    """A link or cookie that is forged, altered, meant for something else, or revoked."""


class ExpiredLink(BadLink):
    code = "expired"


@dataclass(frozen=True)
class InviteLink:
    invite_id: int
    campaign: str
    name: str | None
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Voter:
    """Who an invite (or the voter cookie made from it) lets vote, where, and until when."""

    invite_id: int
    campaign: str
    actor: Actor
    expires_at: datetime


# ----------------------------------------------------------------------------------------- signing


def signing_key(db: Database) -> bytes:
    """This database's signing key (created on first use, then cached per process).

    Deleting its `app_secret` row and restarting the processes rotates it: every invite link and
    voter session made before stops working."""
    key = _keys.get(db.url)
    if key is None:
        with db.read() as s:
            value = q.app_secret_value(s, KEY_NAME)
        if value is None:
            with db.write() as s:
                value = q.app_secret(s, KEY_NAME, lambda: secrets.token_hex(32))
        key = _keys[db.url] = bytes.fromhex(value)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def verify(key: bytes, token: str, purpose: str, *, now: float | None = None) -> dict[str, Any]:
    """The payload of a valid, unexpired token for `purpose`; BadLink / ExpiredLink otherwise."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadLink("This link is not valid. Ask the person who sent it for a new one.")
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.") from exc
    if not isinstance(payload, dict) or payload.get("p") != purpose:
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.")
    try:
        expires = float(payload.get("exp", 0))
    except (TypeError, ValueError) as exc:
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.") from exc
    if expires < (time.time() if now is None else now):
        raise ExpiredLink("This link has expired. Ask the person who sent it for a new one.")
    return payload


def mac(key: bytes, *parts: str) -> str:
    """A short keyed digest (CSRF tokens bound to a session)."""
    return _b64(hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()[:18])


# ----------------------------------------------------------------------------------------- invites


def voter_user_id(name: str | None) -> str:
    """The annotator id of an invited voter: derived from the name, or random for an anonymous invite."""
    if not name:
        return f"anon:{secrets.token_urlsafe(12)}"
    folded = " ".join(name.split()).casefold()
    user = f"name:{folded}"
    return user if len(user) <= 64 else f"name#{hashlib.sha256(folded.encode()).hexdigest()[:40]}"


def clean_name(name: str | None) -> str | None:
    name = " ".join((name or "").split())
    if len(name) > MAX_NAME:
        raise InvalidInput(f"Invite names are at most {MAX_NAME} characters.")
    if any(not c.isprintable() for c in name):
        raise InvalidInput("Invite names must be printable text.")
    return name or None


def create(db: Database, created_by: str, campaign: str, name: str | None, *, base_url: str,
           days: float = DEFAULT_DAYS) -> InviteLink:
    """Write the invite row (audited) and return its signed link. The caller checks admin rights."""
    name = clean_name(name)
    if not 0 < days <= MAX_DAYS:
        raise InvalidInput(f"Invites last between a few hours and {MAX_DAYS} days.")
    base = (base_url or "").strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InvalidInput("Set LABELBOT_PUBLIC_URL to the voting page's base URL (e.g. https://labelbot.example.com).")
    key = signing_key(db)
    expires = utcnow().replace(microsecond=0) + timedelta(days=days)
    with db.write() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}. `labelbot campaign list` shows the campaigns.")
        row = Invite(campaign_id=camp.id, name=name, user_id=voter_user_id(name), created_by=created_by[:120],
                     expires_at=expires)
        s.add(row)
        s.flush()
        invite_id = int(row.id)
        q.add_audit(s, created_by, "invite.create", campaign_id=camp.id, invite_id=invite_id, name=name,
                    expires_at=expires.isoformat())  # never the link itself: it is a credential
    token = sign(key, {"p": "invite", "i": invite_id, "exp": int(expires.timestamp())})
    return InviteLink(invite_id, campaign, name, f"{base}/vote/invite?t={token}", expires)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def voter(db: Database, invite_id: Any) -> Voter:
    """The voter of a live invite; BadLink when it was revoked or its campaign is gone, ExpiredLink after expiry."""
    if not isinstance(invite_id, int) or isinstance(invite_id, bool):
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.")
    with db.read() as s:
        found = q.invite_with_campaign(s, invite_id)
    if found is None:
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.")
    inv, camp = found
    if inv.revoked_at is not None:
        raise BadLink("This invite was withdrawn. Ask the person who sent it for a new one.")
    expires = _aware(inv.expires_at)
    if expires < utcnow():
        raise ExpiredLink("This link has expired. Ask the person who sent it for a new one.")
    actor = Actor(Platform.WEB, WORKSPACE, inv.user_id, inv.name)
    return Voter(invite_id, camp.name, actor, expires)


def redeem(db: Database, token: str) -> Voter:
    """The voter an invite link names (signature, expiry and revocation checked); changes nothing."""
    if not token or len(token) > 1000:
        raise BadLink("This link is not valid. Ask the person who sent it for a new one.")
    payload = verify(signing_key(db), token, "invite")
    return voter(db, payload.get("i"))


def revoke(db: Database, revoked_by: str, campaign: str, invite_id: int) -> bool:
    """Withdraw an invite of `campaign` (its link and the browser sessions made from it stop working)."""
    with db.write() as s:
        camp = q.campaign_by_name(s, campaign)
        found = q.invite_with_campaign(s, invite_id)
        if camp is None or found is None or found[1].id != camp.id:
            raise NotFound(f"No invite {invite_id} in {campaign!r}. `labelbot invite --campaign {campaign} --list` "
                           "shows them.")
        inv = s.get(Invite, invite_id)
        if inv.revoked_at is not None:
            return False
        inv.revoked_at = utcnow()
        s.add(inv)
        q.add_audit(s, revoked_by, "invite.revoke", campaign_id=camp.id, invite_id=invite_id)
    return True


def list_invites(db: Database, campaign: str) -> list[Invite]:
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}. `labelbot campaign list` shows the campaigns.")
        return q.campaign_invites(s, camp.id)
