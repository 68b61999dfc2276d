"""Fixtures of the Discord tests: the fake Discord server and the bot running against it."""

from tests.discord.harness import bot, fake  # noqa: F401
