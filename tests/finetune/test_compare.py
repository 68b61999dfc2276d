"""`finetune compare`: full fine-tune vs LoRA vs frozen backbone + head on one export, table and chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core.errors import InvalidInput
from scheduler.finetune.compare import CompareRow, compare_methods, markdown_table, render_chart
from tests.finetune.conftest import ft_settings


@pytest.mark.slow
def test_compare_trains_three_variants_and_writes_table_and_chart(sdb, pref_export, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    seen = []
    res = compare_methods(sdb, settings, "demo", pref_export, tmp_path / "report",
                          train_args=["--max-steps", "4", "--threads", "2"],
                          progress=lambda v, j, created: seen.append((v, created)))
    assert seen == [("full", True), ("lora", True), ("head", True)]
    rows = {r.variant: r for r in res.rows}
    assert all(r.status == "succeeded" for r in res.rows), res.rows
    assert rows["head"].trainable_params == 385
    assert rows["head"].trainable_params < rows["lora"].trainable_params < rows["full"].trainable_params
    assert rows["full"].trainable_params == rows["full"].total_params
    assert all(r.eval_accuracy is not None and r.train_seconds > 0 for r in res.rows)
    table = res.table_path.read_text()
    assert table.count("| succeeded |") == 3 and "| head |" in table and "| lora |" in table
    assert json.loads(res.json_path.read_text())["rows"][0]["variant"] == "full"
    assert res.chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second comparison on the same export reuses the jobs instead of training again.
    again = compare_methods(sdb, settings, "demo", pref_export, tmp_path / "report2", variants=("head",))
    assert again.rows[0].reused and again.rows[0].job_id == rows["head"].job_id


def test_compare_refuses_unknown_variants(sdb, pref_export, tmp_path):
    with pytest.raises(InvalidInput, match="variants are full, lora"):
        compare_methods(sdb, ft_settings(tmp_path, sdb.url), "demo", pref_export, tmp_path / "r", method="dpo",
                        variants=("head",))


def test_table_and_chart_show_missing_values(tmp_path: Path):
    rows = [CompareRow("full", 1, "succeeded", 0.95, 12.5, 22_000_000, 22_000_000, 0.2, False),
            CompareRow("lora", 2, "failed", None, None, None, None, None, True)]
    table = markdown_table("reward", Path("v0001"), rows)
    assert "| full | succeeded | 0.950 | 12.5 | 22,000,000 | 22,000,000 | 100.00% | 0.2000 | 1 |" in table
    assert "| lora | failed | – | – | – | – | – | – | 2 (reused) |" in table
    path = render_chart(rows, tmp_path / "c.png")
    assert path.stat().st_size > 5000


@pytest.mark.slow
def test_cli_compare_writes_the_report(sdb, pref_export, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATABASE_URL": sdb.url, "LABELBOT_ARTIFACT_DIR": str(tmp_path / "artifacts"),
           "PYTHONPATH": str(root)}
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, "-m", "bot.cli", "finetune", "compare", "--campaign", "demo", "--variants",
                          "head", "--max-steps", "2", "--export", str(pref_export), "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "head: job 1" in res.stdout and "compare.png" in res.stdout
    assert (out / "compare.png").is_file() and "| head | succeeded |" in (out / "compare.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "bot.cli", "finetune", "compare", "--campaign", "demo", "--variants",
                          "tiny", "--export", str(pref_export)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and "reward variants are full, lora, head" in bad.stderr
