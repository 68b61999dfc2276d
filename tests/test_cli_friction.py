"""The CLI's rough edges a newcomer met (issue 16), as a user runs the commands: `campaign show` prints every
setting, missing ML extras give the exact install command, and `labelbot invite` prints a working link."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.core.service import CampaignSpec, LabelingService
from storage.db import Database
from tests.conftest import CLI
from tests.scheduler.conftest import ROOT, cli_cmd, cli_env


def labelbot(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_cmd(*args), cwd=ROOT, env=cli_env(db_url, **env), capture_output=True, text=True,
                          timeout=120)


def make_campaign(db_url: str) -> None:
    db = Database(db_url)
    LabelingService(db).create_campaign(CampaignSpec("c1", overlap=3, gold_rate=0.0), CLI)
    db.dispose()


def test_campaign_show_prints_every_setting_including_what_set_changed(sqlite_url: str):
    make_campaign(sqlite_url)
    done = labelbot(sqlite_url, "campaign", "set", "c1", "--sampling", "disagreement", "--max-share", "0.2",
                    "--daily-cap", "40")
    assert done.returncode == 0, done.stderr
    out = labelbot(sqlite_url, "campaign", "show", "c1").stdout
    rows = {" ".join(line.strip("│ ").split("│")[0].split()): " ".join(line.strip("│ ").split("│")[-1].split())
            for line in out.splitlines() if "│" in line}
    assert rows["sampling"] == "disagreement" and rows["max share"] == "0.2"
    assert rows["daily cap (votes per person per day)"] == "40"
    assert rows["consensus"] == "majority (default)" and rows["ask reason on split"] == "True (default)"
    assert rows["min read chars per s"] == "40.0 (default)"


def test_missing_ml_extras_give_the_exact_install_command(sqlite_url: str, tmp_path: Path):
    make_campaign(sqlite_url)
    # a site hook that makes the ML libraries absent, as in a `pip install labelbot` without extras
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate'):\n"
        "    sys.modules[name] = None\n")
    env = {"PYTHONPATH": f"{hide}:{ROOT}"}
    out = labelbot(sqlite_url, "finetune", "--campaign", "c1", "--method", "dpo", "--base", "x", **env)
    assert out.returncode == 1
    line = " ".join(out.stderr.split())
    assert "ML extras" in line and "trl" in line and "torch==2.13.0" in line and "-m pip install" in line, line
    assert "Traceback" not in out.stderr
    assert not (ROOT / "exports" / "c1").exists()  # refused before exporting anything
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello?\n")
    out = labelbot(sqlite_url, "generate", "--campaign", "c1", "--prompts", str(prompts), "--model",
                   f"mine={model}", "--model", "other=http://127.0.0.1:9/v1", **env)
    line = " ".join(out.stderr.split())
    assert out.returncode == 1 and "local model" in line and "pip install" in line and "torch" in line, line


def test_labelbot_invite_prints_a_link_lists_and_withdraws_it(sqlite_url: str):
    make_campaign(sqlite_url)
    out = labelbot(sqlite_url, "invite", "--campaign", "c1", "--name", "Sam Tarly", LABELBOT_PORT="4123")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("http://127.0.0.1:4123/vote/invite?t=")  # stdout: only the link
    assert "Sam Tarly" in out.stderr and "--revoke 1" in " ".join(out.stderr.split())
    listed = labelbot(sqlite_url, "invite", "--campaign", "c1", "--list").stdout
    assert "Sam Tarly" in listed and "live" in listed
    assert "withdrawn" in labelbot(sqlite_url, "invite", "--campaign", "c1", "--revoke", "1").stdout
    assert "withdrawn" in labelbot(sqlite_url, "invite", "--campaign", "c1", "--list").stdout
    bad = labelbot(sqlite_url, "invite", "--campaign", "nope")
    assert bad.returncode == 1 and "No campaign named 'nope'" in bad.stderr
    bad = labelbot(sqlite_url, "invite", "--campaign", "c1", "--days", "999")
    assert bad.returncode == 1 and "365 days" in bad.stderr
