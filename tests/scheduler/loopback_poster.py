"""A real poster plugin for tests: 'sends' each item by giving its post a message id, like an adapter would."""

from __future__ import annotations


def post_campaign(settings, service, campaign: str, limit: int) -> int:  # type: ignore[no-untyped-def]
    views = service.prepare_posts(campaign, "loopback", "loop-channel", limit)
    for view in views:
        service.attach_message(view.post_id, f"msg-{view.post_id}", channel="loop-channel")
    return len(views)
