"""Structured logs: JSON lines, a request id per HTTP request (echoed as X-Request-Id), no secrets."""

from __future__ import annotations

import io
import json
import logging

import aiohttp

from bot.logging_setup import JsonFormatter, Redactor, bound_request_id, configure, secret_values

from .conftest import ADMIN_TOKEN, SIGNING_SECRET, SLACK_TOKEN, Live


def test_formatter_scrubs_secrets_and_token_shapes():
    fmt = JsonFormatter(Redactor(["my-own-secret-value"]))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "using %s and %s at %s", (
        "my-own-secret-value", "xoxb-123-456-abcdefgh", "https://x/dashboard/signin?t=abc.def&next=/d"), None)
    record.header = "Bearer abcdefghijklmnop"
    with bound_request_id("req-1"):
        line = json.loads(fmt.format(record))
    assert line["request_id"] == "req-1" and line["level"] == "INFO" and line["logger"] == "t"
    assert "my-own-secret-value" not in line["msg"] and "xoxb-123" not in line["msg"]
    assert "t=[redacted]&next=/d" in line["msg"]
    assert line["header"] == "Bearer [redacted]"


async def test_requests_log_json_with_ids_and_no_secrets(live: Live):
    stream = io.StringIO()
    handler = configure(live.settings, stream=stream, level="INFO")
    try:
        assert set(secret_values(live.settings)) >= {ADMIN_TOKEN, SIGNING_SECRET, SLACK_TOKEN}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.get(live.base + "/dashboard", headers={"X-Request-Id": "abc-123"})
            assert r.headers["X-Request-Id"] == "abc-123"
            r = await http.get(live.base + "/dashboard", headers={"X-Request-Id": "bad id with spaces"})
            generated = r.headers["X-Request-Id"]
            assert generated != "bad id with spaces" and len(generated) == 16
            await http.post(live.base + "/dashboard/login", data={"token": ADMIN_TOKEN})
            await http.get(live.base + f"/dashboard/signin?t={SLACK_TOKEN}")
        logging.getLogger("labelbot.test").info("configured with %s", live.settings.slack_signing_secret
                                                .get_secret_value())
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    lines = [json.loads(x) for x in text.splitlines()]
    requests = [x for x in lines if x["logger"] == "labelbot.web" and "route" in x]
    assert {x["request_id"] for x in requests} >= {"abc-123", generated}
    assert any(x["route"] == "/dashboard" and x["status"] == 401 for x in requests)
    assert any(x["msg"] == "dashboard sign-in with the admin token" for x in lines)
    for secret in (ADMIN_TOKEN, SIGNING_SECRET, SLACK_TOKEN):
        assert secret not in text
