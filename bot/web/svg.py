"""Server-rendered inline SVG charts for the dashboard: no JavaScript, no build step, no CDN.

Every text that comes from data is escaped (markupsafe), so a model named `<script>` stays text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from bot.core.replies import LeaderboardRow

BLUE, GREY, GREEN = "#4C72B0", "#888888", "#55A868"


def _scale(lo: float, hi: float, a: float, b: float):  # type: ignore[no-untyped-def]
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def leaderboard_svg(rows: Sequence[LeaderboardRow], *, width: int = 720) -> Markup:
    """Horizontal Bradley–Terry chart: a dot per model at its score, whiskers over the 95% interval."""
    if not rows:
        return Markup('<p class="muted">No votes yet, so no leaderboard.</p>')
    rows = sorted(rows, key=lambda r: r.rank)
    row_h, top, left, right = 34, 24, 190, 60
    height = top + row_h * len(rows) + 30
    lo = min(r.lower for r in rows)
    hi = max(r.upper for r in rows)
    pad = (hi - lo) * 0.05 or 10.0
    x = _scale(lo - pad, hi + pad, left, width - right)
    parts = [f'<svg class="chart leaderboard-chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             '<title>Leaderboard: Bradley–Terry scores with 95% bootstrap intervals</title>']
    for tick in _ticks(lo - pad, hi + pad):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 24}" stroke="#eee"/>'
                     f'<text x="{tx:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" fill="#555">'
                     f'{tick:.0f}</text>')
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        x1, x2, cx = x(r.lower), x(r.upper), x(r.score)
        parts.append(
            f'<g class="model" data-model="{escape(r.model)}">'
            f'<text x="{left - 10}" y="{cy + 4:.1f}" font-size="13" text-anchor="end">'
            f'{r.rank}. {escape(r.model)}</text>'
            f'<line class="whisker" x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" stroke="{GREY}" '
            f'stroke-width="2"><title>95% interval {r.lower:.0f}–{r.upper:.0f}</title></line>'
            f'<line class="whisker-cap" x1="{x1:.1f}" y1="{cy - 6:.1f}" x2="{x1:.1f}" y2="{cy + 6:.1f}" '
            f'stroke="{GREY}" stroke-width="2"/>'
            f'<line class="whisker-cap" x1="{x2:.1f}" y1="{cy - 6:.1f}" x2="{x2:.1f}" y2="{cy + 6:.1f}" '
            f'stroke="{GREY}" stroke-width="2"/>'
            f'<circle class="score" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{BLUE}">'
            f'<title>{escape(r.model)}: {r.score:.1f} ({r.battles} battles)</title></circle>'
            f'<text x="{width - right + 8}" y="{cy + 4:.1f}" font-size="12" fill="#333">{r.score:.0f}</text>'
            '</g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    import math

    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def bars_svg(points: Sequence[tuple[str, float]], *, width: int = 360, height: int = 80, css: str = "sparkline",
             color: str = BLUE, label: str = "") -> Markup:
    """A small bar chart (votes per day): one <rect> per point, a tooltip on each."""
    if not points:
        return Markup('<span class="muted">no votes yet</span>')
    top = max(v for _, v in points) or 1
    bw = width / len(points)
    parts = [f'<svg class="chart {escape(css)}" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for i, (name, value) in enumerate(points):
        h = (height - 14) * value / top
        parts.append(f'<rect x="{i * bw + 1:.1f}" y="{height - 12 - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{escape(name)}: {value:g}</title></rect>')
    parts.append(f'<text x="0" y="{height - 1}" font-size="10" fill="#666">{escape(points[0][0])}</text>'
                 f'<text x="{width}" y="{height - 1}" font-size="10" fill="#666" text-anchor="end">'
                 f'{escape(points[-1][0])}</text></svg>')
    return Markup("".join(parts))


def progress_svg(done: int, total: int, *, width: int = 160) -> Markup:
    share = done / total if total else 0.0
    return Markup(f'<svg class="chart progress" viewBox="0 0 {width} 14" width="{width}" height="14" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{done}/{total} complete</title>'
                  f'<rect width="{width}" height="14" fill="#e6e6e6" rx="3"/>'
                  f'<rect width="{width * share:.1f}" height="14" fill="{GREEN}" rx="3"/></svg>')


def method_bars_svg(rows: Sequence[dict[str, Any]], metric: str = "eval_accuracy", *, width: int = 480) -> Markup:
    """Fine-tune comparison: one bar per method/variant for `metric` (0..1 scale for accuracies)."""
    pts = [(r["label"], float(r[metric])) for r in rows if isinstance(r.get(metric), int | float)]
    if not pts:
        return Markup('<p class="muted">No finished fine-tune job reports this metric yet.</p>')
    row_h, left = 26, 170
    height = row_h * len(pts) + 10
    top = max(1.0, max(v for _, v in pts))
    parts = [f'<svg class="chart finetune-chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(metric)} by method</title>']
    for i, (name, value) in enumerate(pts):
        y = 5 + i * row_h
        w = (width - left - 60) * value / top
        parts.append(f'<text x="{left - 8}" y="{y + 16}" font-size="12" text-anchor="end">{escape(name)}</text>'
                     f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{BLUE}"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 16}" font-size="12">{value:.3f}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
