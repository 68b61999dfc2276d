"""The `labelbot` CLI end to end, as a user runs it (subprocesses on a fresh database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_items

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path, db_url):
    """Run `labelbot ...` in tmp_path against the (empty) test database."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "COLUMNS": "200",
           "LABELBOT_ADMINS": "", "NO_COLOR": "1"}

    def run(*args: str, check: bool = True, **overrides: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env={**env, **overrides},
                              capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stderr + proc.stdout
        return proc

    return run


def test_full_cli_workflow(cli, tmp_path):
    assert "schema up to date" in cli("init").stdout + cli("doctor").stdout
    (tmp_path / "guide.md").write_text("# Guide\nPrefer correct answers.\n")
    cli("campaign", "create", "helpful", "--guidelines", "guide.md", "--overlap", "3",
        "--criteria", "helpfulness,harmlessness", "--slack-channel", "C1")
    listed = json.loads(cli("campaign", "list", "--json").stdout)
    assert listed == [{"name": "helpful", "status": "active", "overlap": 3}]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in make_items(5)) + "\n")
    assert "Imported 5 item(s)" in cli("import", str(items), "--campaign", "helpful").stdout
    assert "Imported 0 item(s)" in cli("import", str(items), "--campaign", "helpful").stdout
    shown = cli("campaign", "show", "helpful").stdout
    assert "helpfulness, harmlessness" in shown and "C1" in shown
    cli("campaign", "pause", "helpful")
    assert json.loads(cli("campaign", "list", "--json").stdout)[0]["status"] == "paused"
    cli("campaign", "resume", "helpful")
    stats = json.loads(cli("stats", "--campaign", "helpful", "--json").stdout)
    assert stats["items"] == 5 and stats["votes"] == 0 and stats["votes_per_item"] == {"0": 5}
    out = cli("export", "--campaign", "helpful", "--format", "votes", "--out", "ds").stdout
    assert "Wrote 0 rows" in out and (tmp_path / "ds" / "v0001" / "manifest.json").exists()


def test_cli_errors_are_one_line_and_change_nothing(cli, tmp_path):
    proc = cli("campaign", "list", check=False, DATABASE_URL=f"sqlite:///{tmp_path}/fresh.db")
    assert proc.returncode == 1 and "labelbot init" in proc.stderr
    cli("init")
    cli("campaign", "create", "c1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(make_items(1)[0]) + "\n" + '{"id": "x", "prompt": "p", "responses": []}\n')
    proc = cli("import", str(bad), "--campaign", "c1", check=False)
    assert proc.returncode == 1
    assert "line 2: responses" in proc.stderr and "nothing imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(cli("stats", "--campaign", "c1", "--json").stdout)["items"] == 0
    for args, needle in [
        (("campaign", "create", "c1"), "already exists"),
        (("campaign", "show", "nope"), "No campaign named 'nope'"),
        (("export", "--campaign", "c1", "--format", "csv"), "Unknown export format"),
        (("campaign", "create", "x", "--overlap", "0"), "between 1 and 50"),
        (("serve", "teleport"), "unknown component"),
        (("post", "--campaign", "c1", "--platform", "slack"), "not set up"),
    ]:
        proc = cli(*args, check=False)
        assert proc.returncode != 0 and needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_help_lists_the_contract(cli):
    out = cli("--help").stdout
    for command in ("init", "campaign", "import", "post", "serve", "export", "stats", "doctor"):
        assert command in out
