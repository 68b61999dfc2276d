"""Platform adapters. Each posts items through a `post_campaign` entry point listed in POSTERS."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# platform -> "module:function"; function(settings, service, campaign, limit) -> number of items posted.
POSTERS: dict[str, str] = {
    "slack": "bot.adapters.slack.poster:post_campaign",
}


def poster(platform: str) -> Callable[..., int]:
    module, func = POSTERS[platform].split(":")
    return getattr(importlib.import_module(module), func)

# platform -> "module:function"; function(settings, campaign_name, channel, text) -> None posts a plain
# notice (fine-tune results) to a channel. Platforms without one get results through
# scheduler.finetune.notify.pending_results / mark_result_posted.
NOTIFIERS: dict[str, str] = {}
