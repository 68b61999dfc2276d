"""A notifier plugged into bot.adapters.NOTIFIERS by tests: records what a platform would post."""

from __future__ import annotations

from typing import Any

SENT: list[tuple[str, str, str]] = []


def notify(settings: Any, campaign: str, channel: str, text: str) -> None:
    SENT.append((campaign, channel, text))


def broken(settings: Any, campaign: str, channel: str, text: str) -> None:
    raise ConnectionError("platform unreachable")
