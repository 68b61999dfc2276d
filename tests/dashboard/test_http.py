"""The dashboard, /healthz and /metrics over real HTTP against `run_server` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from bot import metrics
from bot.adapters.commands import handle
from bot.config import Settings
from bot.core.errors import NotFound
from bot.core.events import Actor, VoteCast
from bot.web import auth

from .conftest import ADMIN_TOKEN, LEAKY_ERROR, MODELS, SIGNING_SECRET, SLACK_TOKEN, Live


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # keep cookies of 127.0.0.1


BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text page (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_everything_but_health_and_metrics_needs_a_token(live: Live):
    async with client() as http:
        for path in ("/dashboard", "/dashboard/campaigns/arena", "/dashboard/campaigns/nope"):
            r = await http.get(live.base + path, allow_redirects=False)
            body = await r.text()
            assert r.status == 401, path
            assert 'id="login"' in body and "alpha" not in body and "leaderboard-chart" not in body
        from storage.models import ExportRecord

        with live.db.read() as s:
            export_id = s.query(ExportRecord).one().id
        for path in ("/dashboard/campaigns/arena/leaderboard.png", f"/dashboard/exports/{export_id}/files/train.jsonl"):
            r = await http.get(live.base + path)
            assert r.status == 401 and not (await r.read()).startswith(b"\x89PNG")
        # a wrong token, a forged cookie, a bearer with the wrong value: all refused
        r = await http.post(live.base + "/dashboard/login", data={"token": "nope"}, allow_redirects=False)
        assert r.status == 401 and "not right" in await r.text()
        forged = auth.make_session(b"k" * 32, "admin token")
        r = await http.get(live.base + "/dashboard", cookies={auth.COOKIE: forged}, allow_redirects=False)
        assert r.status == 401
        r = await http.get(live.base + "/dashboard", headers={"Authorization": "Bearer wrong"})
        assert r.status == 401
        r = await http.get(live.base + "/healthz")
        assert r.status == 200
        r = await http.get(live.base + "/metrics")
        assert r.status == 200


async def test_admin_token_login_and_pages(live: Live):
    async with client() as http:
        r = await http.post(live.base + "/dashboard/login",
                            data={"token": ADMIN_TOKEN, "next": "/dashboard/campaigns/arena"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/dashboard/campaigns/arena"
        cookie = r.cookies[auth.COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        r = await http.get(live.base + "/dashboard")
        index = await r.text()
        assert r.status == 200 and "arena" in index and 'class="campaign-row"' in index
        assert "votes per day" in index and "export:arena" in index  # scheduler runs section
        r = await http.get(live.base + "/dashboard/campaigns/arena")
        page = await r.text()
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store" and "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert page.count('<line class="whisker" ') == len(MODELS)
        assert 'id="annotators"' in page and all(f"slack:{u}" in page for u in ("U1", "U2", "U3"))
        assert "q-0" in page and "the prompt is ambiguous" in page  # split and flagged items
        assert 'class="chart finetune-chart"' in page and "reward / full" in page and "0.810" in page
        # no secret reaches a page, not even one sitting in another component's table
        for secret in (ADMIN_TOKEN, SIGNING_SECRET, SLACK_TOKEN, "train --token"):
            assert secret not in page
        assert "upload failed: token [redacted]" in page and LEAKY_ERROR not in page
        # export files download; anything outside the folder does not
        links = re.findall(r'href="(/dashboard/exports/\d+/files/[^"]+)"', page)
        assert any(link.endswith("/manifest.json") for link in links)
        train = next(link for link in links if link.endswith("/train.jsonl"))
        r = await http.get(live.base + train)
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        expected = (live.seeded["export"].path / "train.jsonl").read_bytes()
        assert await r.read() == expected
        export_id = train.split("/")[3]
        for bad in ("..%2F..%2Fetc%2Fpasswd", ".hidden", "nope.jsonl"):
            r = await http.get(f"{live.base}/dashboard/exports/{export_id}/files/{bad}")
            assert r.status == 404
        r = await http.get(live.base + "/dashboard/campaigns/arena/leaderboard.png")
        png = await r.read()
        assert r.status == 200 and png.startswith(b"\x89PNG") and r.headers["Content-Type"] == "image/png"
        r = await http.get(live.base + "/dashboard/campaigns/arena/finetune.png")
        assert r.status == 200 and (await r.read()).startswith(b"\x89PNG")
        r = await http.get(live.base + "/dashboard/campaigns/nope")
        assert r.status == 404 and "No campaign named" in await r.text()
        # sign out ends the session
        r = await http.post(live.base + "/dashboard/logout", allow_redirects=False)
        assert r.status == 303
        r = await http.get(live.base + "/dashboard", allow_redirects=False)
        assert r.status == 401


async def test_bearer_token_and_model_names_are_escaped(live: Live):
    from storage.models import Response

    with live.db.write() as s:
        assert s.query(Response).filter(Response.model == "alpha").update({"model": "<script>alert(1)</script>"})
    async with client() as http:
        r = await http.get(live.base + "/dashboard/campaigns/arena", headers=BEARER)
        page = await r.text()
    assert r.status == 200
    assert "<script>alert(1)</script>" not in page
    assert 'data-model="&lt;script&gt;alert(1)&lt;/script&gt;"' in page


async def test_signin_link_is_one_time_expires_and_is_admin_only(live: Live):
    service = live.seeded["service"]
    admin = Actor("slack", "T1", "UADMIN")
    refused = handle(service, live.settings, Actor("slack", "T1", "U1"), "dashboard")
    assert not refused.ok and "only labelbot admins" in refused.text
    no_url = handle(service, Settings(_env_file=None, database_url=live.settings.database_url,
                                      labelbot_admins="slack:UADMIN", labelbot_dashboard_token=ADMIN_TOKEN),
                    admin, "dashboard")
    assert not no_url.ok and "LABELBOT_PUBLIC_URL" in no_url.text
    reply = handle(service, live.settings, admin, "dashboard")
    assert reply.ok and reply.ephemeral and "works once" in reply.text
    url = re.search(r"(http://\S+)", reply.text).group(1)
    token = url.split("t=", 1)[1]
    async with client() as http:
        # a GET (what a link preview does) only shows the button: nothing is used up, no cookie
        r = await http.get(url, allow_redirects=False)
        assert r.status == 200 and 'id="signin"' in await r.text() and auth.COOKIE not in r.cookies
        nonce = re.search(r"script-src 'nonce-([^']+)'", r.headers["Content-Security-Policy"]).group(1)
        assert f'nonce="{nonce}"' in await r.text()
        r = await http.post(live.base + "/dashboard/signin", data={"t": token, "next": "https://evil.example/"},
                            allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/dashboard"  # no open redirect
        r = await http.get(live.base + "/dashboard")
        assert r.status == 200 and "slack:UADMIN" in await r.text()
    async with client() as http:
        r = await http.post(live.base + "/dashboard/signin", data={"t": token}, allow_redirects=False)
        assert r.status == 401 and "already used" in await r.text()
        tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        r = await http.post(live.base + "/dashboard/signin", data={"t": tampered}, allow_redirects=False)
        assert r.status == 401
        key = auth.signing_key(live.settings)
        old = auth.make_signin_link(live.settings, admin.key, now=time.time() - auth.SIGNIN_TTL_S - 5).token
        r = await http.post(live.base + "/dashboard/signin", data={"t": old}, allow_redirects=False)
        assert r.status == 401 and "expired" in await r.text()
        # a session token is not a sign-in token, and the reverse
        r = await http.post(live.base + "/dashboard/signin", data={"t": auth.make_session(key, admin.key)},
                            allow_redirects=False)
        assert r.status == 401
        # a link for someone who is not (or no longer) an admin does not sign in
        stranger = auth.make_signin_link(live.settings, "slack:U1").token
        r = await http.post(live.base + "/dashboard/signin", data={"t": stranger}, allow_redirects=False)
        assert r.status == 401
        # someone the platform vouched for (a Discord server administrator) signs in on the signed claim
        vouched = auth.make_signin_link(live.settings, "discord:4242", platform_admin=True).token
        r = await http.post(live.base + "/dashboard/signin", data={"t": vouched}, allow_redirects=False)
        assert r.status == 303
        r = await http.get(live.base + "/dashboard")
        assert r.status == 200 and "discord:4242" in await r.text()
    with live.db.read() as s:
        from storage.models import AuditLog

        actions = [a.action for a in s.query(AuditLog).filter(AuditLog.actor == admin.key)]
        details = " ".join(str(a.details) for a in s.query(AuditLog).filter(AuditLog.action.like("dashboard.%")))
    assert actions.count("dashboard.link") == 1 and actions.count("dashboard.signin") == 1
    assert token not in details


async def test_health_reports_each_check(live: Live):
    async with client() as http:
        r = await http.get(live.base + "/healthz")
        assert r.status == 200 and await r.json() == {"ok": True, "checks": {"database": True}}
        live.ctx.health["discord"] = lambda: False
        live.ctx.health["slack"] = lambda: True
        r = await http.get(live.base + "/healthz")
        body = await r.json()
        assert r.status == 503 and body == {"ok": False, "checks": {"database": True, "discord": False, "slack": True}}
        live.ctx.health["discord"] = lambda: 1 / 0  # a probe that raises counts as down, not as a crash
        r = await http.get(live.base + "/healthz")
        assert r.status == 503 and (await r.json())["checks"]["discord"] is False
        del live.ctx.health["discord"]


async def test_metrics_count_votes_requests_and_operations(live: Live):
    service = live.seeded["service"]
    async with client() as http:
        before = await (await http.get(live.base + "/metrics")).text()
        post = live.seeded["split_post"]  # split, so it asks for one more vote
        u = Actor("slack", "T1", "U4")
        await asyncio.to_thread(service.cast_vote, VoteCast(u, post, "A", delivery_id="m1"))
        await asyncio.to_thread(service.cast_vote, VoteCast(u, post, "A", delivery_id="m1"))  # replay
        await asyncio.to_thread(service.cast_vote, VoteCast(u, post, "B", delivery_id="m2"))  # change
        with pytest.raises(NotFound):
            await asyncio.to_thread(service.cast_vote, VoteCast(u, 999_999, "A"))
        metrics.interaction("slack", "block_actions")
        metrics.ack_latency("discord", 0.2)
        metrics.posting_queue(7, "slack")
        metrics.job_run("export:arena", "done")
        await http.post(live.base + "/slack/events", data=b"{}")  # no Slack component here: a 404, still timed
        after = await (await http.get(live.base + "/metrics")).text()
    assert after.startswith("# HELP")
    for k, n in (("new", 1), ("replay", 1), ("changed", 1), ("rejected", 1)):
        got = sample(after, "labelbot_votes_total", platform="slack", kind=k) - sample(
            before, "labelbot_votes_total", platform="slack", kind=k)
        assert got == n, (k, got)
    assert sample(after, "labelbot_interactions_total", platform="slack", kind="block_actions") >= 1
    assert sample(after, "labelbot_ack_latency_seconds_count", platform="discord") >= 1
    assert sample(after, "labelbot_posting_queue", platform="slack") == 7
    assert sample(after, "labelbot_job_runs_total", job="export:arena", status="done") >= 1
    assert sample(after, "labelbot_http_request_duration_seconds_count", method="GET", route="/metrics") >= 1
    assert sample(after, "labelbot_http_requests_total", method="POST", route="unmatched", status="4xx") >= 1
    assert sample(after, "labelbot_votes_in_flight") == 0


async def test_empty_admin_token_never_matches_and_no_secret_locks_everything(sqlite_url: str, tmp_path):
    from .conftest import free_port, serving, settings_for

    port = free_port()
    cfg = settings_for(sqlite_url, port, labelbot_dashboard_token="")  # what .env.example leaves
    async with serving(cfg, port), client() as http:
        r = await http.get(f"http://127.0.0.1:{port}/dashboard/login")
        assert r.status == 200 and 'name="token"' not in await r.text()
        r = await http.post(f"http://127.0.0.1:{port}/dashboard/login", data={"token": ""}, allow_redirects=False)
        assert r.status == 401
        r = await http.get(f"http://127.0.0.1:{port}/dashboard", headers={"Authorization": "Bearer "})
        assert r.status == 401
    # no secret at all: no link can be minted and nothing signs in
    bare = Settings(_env_file=None, database_url=sqlite_url, labelbot_admins="slack:UADMIN",
                    labelbot_public_url="http://127.0.0.1:1")
    assert auth.signing_key(bare) is None
    from bot.core.service import LabelingService
    from storage.db import Database

    db = Database(sqlite_url)
    reply = handle(LabelingService(db, bare.admins), bare, Actor("slack", "T1", "UADMIN"), "dashboard")
    db.dispose()
    assert not reply.ok and "LABELBOT_DASHBOARD_TOKEN" in reply.text
