"""Structured logs: one JSON object per line, a request id on every line logged while handling a
request, and secrets scrubbed from the message before it is written.

The request id lives in a ContextVar, so it follows a request through `await`s and into
`asyncio.to_thread` workers (which copy the context) without being passed around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("labelbot_request_id", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Token shapes worth scrubbing even when they are not our own configured secrets.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack bot/user tokens
    re.compile(r"xapp-[A-Za-z0-9-]{8,}"),  # Slack app-level tokens
    re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),  # Discord bot tokens
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)([?&](?:t|token|code)=)[^&\s]+"),  # sign-in links and tokens in URLs
]
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}
REDACTED = "[redacted]"


def new_request_id(incoming: str | None = None) -> str:
    """Keep a well-formed incoming id (from a proxy's X-Request-Id), else make one."""
    if incoming and _VALID_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex[:16]


@contextmanager
def bound_request_id(value: str | None = None) -> Iterator[str]:
    """Log everything inside the block with this request id (adapters wrap each interaction)."""
    rid = new_request_id(value)
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)


class Redactor:
    """Replaces configured secret values and well-known token shapes with [redacted]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "request_id", ...extra fields, "exc"}` on one line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": self.redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id" and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool) or value is None else self.redact(str(value))
        if record.exc_info:
            out["exc"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def secret_values(settings: Any) -> list[str]:
    """Every SecretStr value in the settings (what must never be logged)."""
    from pydantic import SecretStr

    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    return values


def configure(settings: Any, *, stream: IO[str] | None = None, level: str | None = None) -> logging.Handler:
    """Route the root logger to one JSON handler on stderr (replacing handlers this function added)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secret_values(settings))))
    handler._labelbot = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_labelbot", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.labelbot_log_level).upper())
    return handler
