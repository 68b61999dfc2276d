"""Discord adapter (discord.py): persistent buttons, modals, threads and the `/label` app command group.

Each handler is translate (payload -> core event) -> core call -> render (reply -> embeds/components);
no labeling rule lives here. `client.start` is the `labelbot serve discord` component and
`poster.post_campaign` is what `labelbot post --platform discord` calls.
"""
