"""`labelbot finetune compare`: train several variants on one export and chart the trade-offs.

Variants of one method run one after another as ordinary fine-tune jobs (so each is recorded, and a
variant already trained on this export is reused rather than retrained): full fine-tune, LoRA adapter
(peft) and frozen backbone with a trained head. Writes compare.md (table), compare.json and
compare.png (held-out accuracy, training time, trainable parameters) into the output folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.core.errors import InvalidInput
from scheduler.finetune.launch import VARIANTS, launch, wait_for_job
from storage.db import Database


@dataclass(frozen=True)
class CompareRow:
    variant: str
    job_id: int
    status: str
    eval_accuracy: float | None
    train_seconds: float | None
    trainable_params: int | None
    total_params: int | None
    train_loss: float | None
    reused: bool


@dataclass(frozen=True)
class CompareResult:
    rows: list[CompareRow]
    table_path: Path
    json_path: Path
    chart_path: Path


def compare_methods(db: Database, settings: Settings, campaign: str, export_path: Path, out: Path, *,
                    method: str = "reward", variants: tuple[str, ...] = ("full", "lora", "head"),
                    backend: str = "local", base_model: str | None = None, train_args: list[str] | None = None,
                    timeout: float = 6 * 3600, progress: Any = None) -> CompareResult:
    """Train each variant (sequentially: they would fight over the same cores or GPU) and write the report."""
    if method not in VARIANTS:
        raise InvalidInput(f"Unknown method {method!r}.")
    bad = [v for v in variants if v not in VARIANTS[method]]
    if bad or not variants:
        raise InvalidInput(f"{method} variants are {', '.join(VARIANTS[method])}; got {', '.join(bad) or 'none'}.")
    rows = []
    for variant in variants:
        job_id, created = launch(db, settings, campaign, method, export_path, backend, variant=variant,
                                 base_model=base_model, train_args=train_args, actor="compare")
        if progress:
            progress(variant, job_id, created)
        job = wait_for_job(db, job_id, timeout=timeout)
        m = job.metrics
        rows.append(CompareRow(variant, job_id, job.status, m.get("eval_accuracy"), m.get("train_seconds"),
                               m.get("trainable_params"), m.get("total_params"), m.get("train_loss"), not created))
    out.mkdir(parents=True, exist_ok=True)
    table = out / "compare.md"
    _atomic_write(table, markdown_table(method, export_path, rows))
    data = out / "compare.json"
    _atomic_write(data, json.dumps({"method": method, "export": str(export_path),
                                    "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    chart = out / "compare.png"
    render_chart(rows, chart, title=f"{method}: {Path(export_path).name}")
    return CompareResult(rows, table, data, chart)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(method: str, export_path: Path, rows: list[CompareRow]) -> str:
    lines = [f"# {method} variants on {export_path}", "",
             "| variant | status | held-out pairwise accuracy | training time (s) | trainable params | total params "
             "| share trained | train loss | job |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = (f"{r.trainable_params / r.total_params:.2%}" if r.trainable_params is not None and r.total_params
                 else "–")
        lines.append(f"| {r.variant} | {r.status} | {_num(r.eval_accuracy, '.3f')} | {_num(r.train_seconds, '.1f')} "
                     f"| {_num(r.trainable_params, ',')} | {_num(r.total_params, ',')} | {share} "
                     f"| {_num(r.train_loss, '.4f')} | {r.job_id}{' (reused)' if r.reused else ''} |")
    return "\n".join(lines) + "\n"


def render_chart(rows: list[CompareRow], path: Path, *, title: str = "") -> Path:
    """Three bar panels: accuracy, training time, trainable parameters (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.variant for r in rows]
    panels = [("held-out pairwise accuracy", [r.eval_accuracy or 0.0 for r in rows], False),
              ("training time (s)", [r.train_seconds or 0.0 for r in rows], False),
              ("trainable parameters", [max(r.trainable_params or 0, 1) for r in rows], True)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"][: len(rows)]
    for ax, (label, values, log_scale) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=colors)
        ax.set_title(label)
        if log_scale:
            ax.set_yscale("log")
        if label.startswith("held-out"):
            ax.set_ylim(0, 1.05)
        for bar, value in zip(bars, values, strict=True):
            text = f"{value:.2f}" if isinstance(value, float) and value < 10 else f"{value:,.0f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
