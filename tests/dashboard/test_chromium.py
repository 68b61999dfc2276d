"""A real headless Chromium (Debian's `chromium`) against the dashboard served on 127.0.0.1.

The browser follows the whole sign-in flow itself: the one-time link from `/label dashboard` shows a
page whose script submits the form, the POST sets the session cookie and redirects to the campaign.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from bot.adapters.commands import handle
from bot.core.events import Actor

from .conftest import MODELS, Live

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="/usr/bin/chromium is absent (apt-get install -y chromium; .ci/run does it)")


async def chromium(profile: Path, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium with a fresh profile; its stdout (the DOM for --dump-dom)."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def signin_link(live: Live, next_path: str) -> str:
    service = live.seeded["service"]
    reply = handle(service, live.settings, Actor("slack", "T1", "UADMIN"), "dashboard")
    assert reply.ok and reply.ephemeral, reply.text
    url = re.search(r"(http://\S+)", reply.text).group(1)
    return f"{url}&next={next_path}"


async def test_chromium_renders_the_dashboard_and_refuses_strangers(live: Live, tmp_path: Path):
    # without a token: nothing but the login page
    dom = await chromium(tmp_path / "p1", "--dump-dom", f"{live.base}/dashboard/campaigns/arena")
    assert 'id="login"' in dom
    assert "leaderboard-chart" not in dom and "alpha" not in dom

    # a one-time link from /label dashboard signs in and lands on the campaign page
    link = signin_link(live, "/dashboard/campaigns/arena")
    dom = await chromium(tmp_path / "p2", "--virtual-time-budget=15000", "--dump-dom", link)
    assert 'id="login"' not in dom, dom[:2000]
    assert 'class="chart leaderboard-chart"' in dom
    whiskers = re.findall(r'<line class="whisker" ', dom)
    assert len(whiskers) == len(MODELS)
    for model in MODELS:
        assert f'data-model="{model}"' in dom
    assert 'id="annotators"' in dom and "slack:U1" in dom
    assert "q-0" in dom  # the split item is listed as needing attention
    assert 'class="download"' in dom  # export files
    assert "reward / lora" in dom  # fine-tune comparison rendered from the finetune_job rows
    assert "xoxb-" not in dom and "dash-admin-token" not in dom

    # the same link does not work twice
    dom = await chromium(tmp_path / "p3", "--virtual-time-budget=15000", "--dump-dom", link)
    assert 'id="login"' in dom and "already used" in dom
    assert "leaderboard-chart" not in dom

    # a screenshot for people to look at (kept under the test's tmp dir; DASHBOARD_SCREENSHOT copies it)
    shot = tmp_path / "dashboard.png"
    await chromium(tmp_path / "p4", "--virtual-time-budget=15000", "--window-size=1280,2200",
                   f"--screenshot={shot}", signin_link(live, "/dashboard/campaigns/arena"))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])
