"""`/label leaderboard` and `/label stats` carry a PNG chart in the CommandReply for the adapters to attach."""

from __future__ import annotations

import io

from bot.adapters.commands import handle
from bot.config import Settings
from bot.core.events import Actor, VoteCast
from bot.core.replies import LeaderboardRow
from bot.web import svg

PNG = b"\x89PNG\r\n\x1a\n"


def _image(png: bytes):  # type: ignore[no-untyped-def]
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")


def _vote_all(service, campaign: str) -> None:  # type: ignore[no-untyped-def]
    views = service.prepare_posts(campaign, "slack", "C123", 6)
    for n, view in enumerate(views):
        for u in ("U1", "U2", "U3"):
            service.cast_vote(VoteCast(Actor("slack", "T1", u), view.post_id, "A" if n % 3 else "B"))


def test_leaderboard_and_stats_replies_carry_pngs(service, campaign):
    cfg = Settings(_env_file=None)
    user = Actor("slack", "T1", "U9")
    empty = handle(service, cfg, user, "leaderboard")
    assert empty.ok and empty.chart_png is None and "No votes" in empty.text
    _vote_all(service, campaign)
    board = handle(service, cfg, user, "leaderboard")
    assert board.ok and board.chart_png is not None and board.chart_png.startswith(PNG)
    assert board.chart_name == "leaderboard-demo.png"
    img = _image(board.chart_png)
    assert img.shape[1] == 750 and img.shape[0] > 150  # 7.5 in at 100 dpi; height grows with the models
    stats = handle(service, cfg, user, "stats")
    assert stats.ok and stats.chart_png.startswith(PNG) and stats.chart_name == "stats-demo.png"
    assert _image(stats.chart_png).shape[1] == 850
    # the picture has content, not a blank canvas
    assert _image(stats.chart_png)[..., :3].std() > 0.05


def test_leaderboard_chart_grows_with_models_and_escapes_names():
    from bot.charts import leaderboard_png

    rows = [LeaderboardRow(f"m{i}", 1000 - 10 * i, 950 - 10 * i, 1050 - 10 * i, 30, i + 1) for i in range(8)]
    small, big = _image(leaderboard_png("c", rows[:2])), _image(leaderboard_png("c", rows))
    assert big.shape[0] > small.shape[0]
    out = svg.leaderboard_svg([LeaderboardRow("<b>x</b>", 1000, 900, 1100, 3, 1)])
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out and out.count('class="whisker"') == 1
