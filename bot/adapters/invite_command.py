"""`/label invite [NAME] [campaign=C]`: a signed link to the browser voting page, shown only to the admin.

The same `LabelingService.create_invite` as `labelbot invite` makes it; the link is a credential, so the
reply is private and the audit log records the invite, never the link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.config import Settings
from bot.core.events import Actor
from bot.core.service import LabelingService

if TYPE_CHECKING:
    from bot.adapters.commands import CommandReply

USAGE = "Usage: `/label invite [NAME] [campaign=CAMPAIGN]`, e.g. `/label invite Jane Doe campaign=helpful-v1`."


def invite(service: LabelingService, settings: Settings, actor: Actor, channel: str | None,
           args: list[str]) -> CommandReply:
    from bot.adapters.commands import CommandReply, resolve_campaign
    from bot.core.errors import InvalidInput

    explicit = None
    words = []
    for word in args:
        key, eq, value = word.partition("=")
        if eq and key.lower() == "campaign":
            explicit = value
        elif eq:
            raise InvalidInput(f"Unknown setting `{key}`. {USAGE}")
        else:
            words.append(word)
    campaign = resolve_campaign(service, actor.platform, channel, explicit)
    link = service.create_invite(actor, campaign, " ".join(words) or None, base_url=settings.public_base_url)
    who = f"for *{link.name}* " if link.name else ""
    return CommandReply(f"Invite {who}to vote in *{campaign}* in a browser (works until "
                        f"{link.expires_at:%Y-%m-%d}; anyone holding it votes as this person, so send it to them "
                        f"privately): {link.url}", ephemeral=True)
