"""PNG charts for chat (`/label leaderboard`, `/label stats`) and the dashboard's downloadable images.

matplotlib is imported inside each function (it costs ~0.5 s) and only its object API is used
(Figure + Agg canvas, never pyplot), so charts can be drawn from worker threads concurrently.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from bot.core.replies import CampaignStats, LeaderboardRow

BLUE, ORANGE, GREEN, GREY = "#4C72B0", "#DD8452", "#55A868", "#8C8C8C"
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def leaderboard_png(campaign: str, rows: Sequence[LeaderboardRow]) -> bytes | None:
    """Bradley–Terry scores with 95% interval whiskers, best model on top; None when nobody voted."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r.rank)
    fig = _figure(7.5, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    scores = [r.score for r in rows]
    lower = [max(0.0, r.score - r.lower) for r in rows]
    upper = [max(0.0, r.upper - r.score) for r in rows]
    ax.errorbar(scores, y, xerr=[lower, upper], fmt="o", color=BLUE, ecolor=GREY, elinewidth=2, capsize=5)
    ax.set_yticks(y, [f"{r.rank}. {r.model}" for r in rows])
    for yi, r in zip(y, rows, strict=True):
        ax.annotate(f"{r.score:.0f}", (r.score, yi), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=8)
    ax.set_xlabel("Bradley–Terry score (95% bootstrap interval)")
    ax.set_title(f"Leaderboard — {campaign}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    return _png(fig)


def stats_png(stats: CampaignStats) -> bytes:
    """Progress (complete / open items) and how many votes each item has."""
    fig = _figure(8.5, 3.2)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.6])
    done, total = stats.complete_items, stats.items
    ax1.barh([0], [done], color=GREEN, label="complete")
    ax1.barh([0], [max(0, total - done)], left=[done], color="#DDDDDD", label="open")
    ax1.set_yticks([])
    ax1.set_xlim(0, max(total, 1))
    ax1.set_title(f"Progress: {done}/{total} items ({stats.progress:.0%})")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2, frameon=False)
    hist = dict(sorted(stats.votes_per_item.items()))
    ax2.bar([str(k) for k in hist], list(hist.values()), color=BLUE)
    ax2.set_xlabel("votes on the item")
    ax2.set_ylabel("items")
    alpha = "n/a" if stats.agreement_alpha is None else f"{stats.agreement_alpha:.2f}"
    ax2.set_title(f"{stats.votes} votes by {stats.annotators} annotators · alpha {alpha}")
    fig.suptitle(f"{stats.campaign} ({stats.status})")
    return _png(fig)


def votes_over_time_png(campaign: str, days: Sequence[tuple[str, int]]) -> bytes:
    """Votes per day."""
    fig = _figure(7.5, 2.8)
    ax = fig.add_subplot()
    ax.bar([d for d, _ in days], [n for _, n in days], color=BLUE)
    ax.set_title(f"Votes per day — {campaign}")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return _png(fig)


def finetune_png(rows: Sequence[dict[str, Any]]) -> bytes | None:
    """Method comparison: held-out accuracy and training time per method/variant (latest finished job each)."""
    rows = [r for r in rows if isinstance(r.get("eval_accuracy"), int | float)]
    if not rows:
        return None
    fig = _figure(8.5, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    names = [r["label"] for r in rows]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    ax1.bar(names, [r["eval_accuracy"] for r in rows], color=colors)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("held-out accuracy")
    ax2.bar(names, [r.get("train_seconds") or 0.0 for r in rows], color=colors)
    ax2.set_title("training time (s)")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(fig)
