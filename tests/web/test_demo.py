"""`labelbot demo` as a newcomer runs it: an empty folder, nothing configured, a real subprocess. It prints a
voting URL and a dashboard sign-in URL; a vote through the page is stored in the SQLite file it created,
and the dashboard's leaderboard shows the voted models."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bot.core.events import Actor
from bot.core.service import LabelingService
from storage.db import Database, upgrade
from tests.scheduler.conftest import ROOT, cli_cmd, free_port

from .conftest import client, confirmation, form_fields

NOTHING_CONFIGURED = ("SLACK_", "DISCORD_", "LABELBOT_", "DATABASE_URL")


def bare_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOTHING_CONFIGURED)}
    return {**env, "PYTHONPATH": str(ROOT)}


def read_lines(proc: subprocess.Popen[str], want: int, timeout: float = 90) -> list[str]:
    """stdout lines until `want` of them are URLs (or the process ends / time runs out)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while sum("http://" in x for x in out) < want and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        out.append(line)
    return out


async def test_demo_from_an_empty_folder_to_a_stored_vote_and_a_moving_leaderboard(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(cli_cmd("demo", "--port", str(port)), cwd=tmp_path, env=bare_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = read_lines(proc, 2)
        vote_line = next((x for x in lines if f"{base}/" in x and "vote" in x.lower()), None)
        assert vote_line, (lines, proc.poll())
        vote_url = re.search(r"(http://\S+)", vote_line).group(1)
        signin_url = re.search(r"(http://\S+/dashboard/signin\S+)", "\n".join(lines)).group(1)
        assert (tmp_path / "labelbot.db").is_file()

        async with client() as http:
            resp = await http.get(vote_url)
            page = await resp.text()
            assert resp.status == 200 and ("Which response is better?" in page or "responses is best?" in page)
            for n in range(3):  # a few votes, each on the next item
                fields = form_fields(page, "vote")
                resp = await http.post(base + fields.pop("_action"), data={**fields, "choice": "A"},
                                       headers={"Origin": base})
                page = await resp.text()
                assert resp.status == 200 and "Vote recorded: A better." in confirmation(page), page[:500]
                if n == 0:
                    with sqlite3.connect(tmp_path / "labelbot.db") as conn:  # the first stored vote
                        assert conn.execute("SELECT COUNT(*) FROM vote").fetchone()[0] == 1
                resp = await http.get(f"{base}/vote/demo")
                page = await resp.text()

            # the dashboard sign-in link: a page whose form posts the one-time token, then the campaign page
            resp = await http.get(signin_url)
            html = await resp.text()
            token = re.search(r'name="t" value="([^"]+)"', html).group(1)
            nxt = re.search(r'name="next" value="([^"]+)"', html).group(1)
            resp = await http.post(f"{base}/dashboard/signin", data={"t": token, "next": nxt},
                                   headers={"Origin": base})
            board = await resp.text()
            assert resp.status == 200 and str(resp.url).endswith("/dashboard/campaigns/demo")
            assert "leaderboard-chart" in board and len(re.findall(r'data-model="', board)) >= 2
        with sqlite3.connect(tmp_path / "labelbot.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM vote").fetchone()[0] == 3
            assert conn.execute("SELECT COUNT(*) FROM item").fetchone()[0] >= 24
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_seed_is_idempotent_and_ships_multiway_and_image_items(sqlite_url: str):
    from bot import demo

    db = Database(sqlite_url)
    service = LabelingService(db)
    actor = Actor("cli", "", "t")
    first = demo.seed(service, actor)
    again = demo.seed(service, actor)
    assert first.created and first.added == first.items >= 24
    assert not again.created and again.added == 0 and again.items == first.items
    with db.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT COUNT(*) FROM item WHERE n_responses >= 3")).scalar_one() >= 5
        assert conn.execute(text("SELECT COUNT(*) FROM item WHERE n_responses = 4")).scalar_one() >= 1
        images = conn.execute(text("SELECT image FROM response WHERE image IS NOT NULL")).scalars().all()
    assert images and all(i.startswith("data:image/png;base64,") for i in images)  # no network needed
    db.dispose()


@pytest.mark.parametrize("command", [["demo"], ["serve", "web"]])
def test_a_busy_port_is_one_line_naming_it_and_how_to_choose_another(command: list[str], tmp_path: Path):
    import socket

    upgrade(f"sqlite:///{tmp_path / 'labelbot.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(cli_cmd(*command, "--port", str(port)), cwd=tmp_path, env=bare_env(),
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, out.stderr
    assert str(port) in lines[0] and "already in use" in lines[0] and "--port" in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
