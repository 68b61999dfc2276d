"""Platform adapters. Each posts items through a `post_campaign` entry point listed in POSTERS."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# platform -> "module:function"; function(settings, service, campaign, limit) -> number of items posted.
POSTERS: dict[str, str] = {
    "discord": "bot.adapters.discord.poster:post_campaign",
}


def poster(platform: str) -> Callable[..., int]:
    module, func = POSTERS[platform].split(":")
    return getattr(importlib.import_module(module), func)
