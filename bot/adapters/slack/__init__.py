"""Slack adapter: translate Bolt payloads into core events, call the core, render replies as Block Kit.

`app.py` wires slack-bolt (AsyncApp) into `labelbot serve`; `listeners.py` holds the thin handlers;
`translate.py` turns payloads into `bot.core.events`; `render.py` turns core replies into Block Kit;
`poster.py` posts items to channels (paced, 429-safe).
"""
