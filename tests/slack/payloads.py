"""Signed requests shaped like Slack's documented payloads (block_actions, view_submission, slash
commands, Events API), shared by the Slack tests and bench/bench_slack.py."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

TOKEN = "xoxb-test-token-0123456789"
APP_TOKEN = "xapp-test-token-0123456789"
SECRET = "test-signing-secret-abcdef"
TEAM = "T1"
_counter = itertools.count(1)


def sign(body: str, *, secret: str = SECRET, ts: int | None = None,
         content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """Headers Slack sends: X-Slack-Request-Timestamp and the v0 HMAC-SHA256 signature of `v0:ts:body`."""
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}", "Content-Type": content_type}


def form_payload(payload: dict[str, Any]) -> str:
    """Interactivity payloads arrive as `payload=<json>` form bodies."""
    return urlencode({"payload": json.dumps(payload)})


def trigger() -> str:
    n = next(_counter)
    return f"{1000000 + n}.{2000 + n}.{hashlib.md5(str(n).encode()).hexdigest()[:24]}"


def block_actions(action_id: str, *, user: str = "U1", channel: str = "C123", message_ts: str | None = None,
                  trigger_id: str | None = None, response_url: str | None = None, team: str = TEAM,
                  ephemeral: bool = False) -> dict[str, Any]:
    post_id = action_id.split(":")[2] if action_id.count(":") >= 2 else "0"
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                      "is_ephemeral": ephemeral},
        "trigger_id": trigger_id or trigger(),
        "team": {"id": team, "domain": "fake"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "labeling"},
        "message": {"type": "message", "ts": message_ts, "text": "item", "bot_id": "BBOT", "user": "UBOT"},
        "state": {"values": {}},
        "response_url": response_url or "https://hooks.slack.invalid/actions/1",
        "actions": [{"action_id": action_id, "block_id": "lbl_vote", "type": "button", "value": post_id,
                     "text": {"type": "plain_text", "text": "x"}, "action_ts": f"{time.time():.6f}"}],
    }


def view_submission(view: dict[str, Any], values: dict[str, Any], *, user: str = "U1", team: str = TEAM,
                    trigger_id: str | None = None) -> dict[str, Any]:
    """A view_submission for a modal we opened (`view` as sent to views.open), with the given state values."""
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": trigger_id or trigger(),
        "view": {**view, "id": "V123", "team_id": team, "state": {"values": values}, "hash": "1.abc",
                 "app_id": "A1", "bot_id": "BBOT"},
        "response_urls": [],
        "is_enterprise_install": False,
    }


def slash_command(text: str, *, user: str = "U1", channel: str = "C123", response_url: str | None = None,
                  team: str = TEAM) -> str:
    return urlencode({
        "token": "legacy-verification-token", "team_id": team, "team_domain": "fake", "channel_id": channel,
        "channel_name": "labeling", "user_id": user, "user_name": user.lower(), "command": "/label", "text": text,
        "api_app_id": "A1", "is_enterprise_install": "false",
        "response_url": response_url or "https://hooks.slack.invalid/commands/1", "trigger_id": trigger(),
    })


def message_event(text: str, *, user: str = "U1", channel: str = "C123", thread_ts: str | None = None,
                  ts: str | None = None, event_id: str | None = None, team: str = TEAM) -> dict[str, Any]:
    ts = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
                             "event_ts": ts, "channel_type": "channel", "team": team}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {
        "token": "legacy-verification-token", "team_id": team, "api_app_id": "A1", "event": event,
        "type": "event_callback", "event_id": event_id or f"Ev{next(_counter):08d}", "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": "UBOT", "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }
