"""The browser voting page in a real headless Chromium, driven over the DevTools protocol: open an invite
link, vote with a keyboard shortcut, change the vote with a click, correct a response, rate a criterion,
skip, rank three responses, flag, and see the item revealed once it reaches its quorum. Each step is
checked on the page (what the person reads) and in the database (what was stored)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.core.events import Actor, VoteCast

from .cdp import CHROMIUM, chromium
from .conftest import Site

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="/usr/bin/chromium is absent (apt-get install -y chromium; .ci/run does it)"),
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),  # the HTTP tests cover PostgreSQL
]


def rows(site: Site, sql: str, **params: object) -> list[dict]:
    with site.db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def web_votes(site: Site) -> list[dict]:
    return rows(site, "SELECT v.*, a.display_name FROM vote v JOIN annotator a ON a.id = v.annotator_id "
                      "WHERE a.platform = 'web' ORDER BY v.id")


def permutation(site: Site, post_id: int) -> list[int]:
    value = rows(site, "SELECT permutation FROM post WHERE id = :p", p=post_id)[0]["permutation"]
    return json.loads(value) if isinstance(value, str) else value


async def test_vote_change_correct_rank_and_reveal_in_chromium(site: Site, tmp_path: Path):
    async with chromium(tmp_path / "profile") as page:
        # the invite link signs in and lands on an item (the token is gone from the address bar)
        await page.goto(site.invite("pairs", "Rita"))
        url = await page.eval("location.pathname")
        assert url.startswith("/vote/pairs/") and "t=" not in await page.eval("location.href")
        post_id = int(url.rsplit("/", 1)[1])
        assert await page.eval("document.getElementById('title').textContent") == "Which response is better?"
        labels = await page.eval("[...document.querySelectorAll('#vote button .label')].map(b => b.textContent)")
        assert labels == ["A better", "B better", "Tie", "Both bad"]
        body = await page.text()
        assert "0/3 votes" in body and "Signed in as Rita" in body
        assert "alpha" not in body and "beta" not in body  # blind: no model names before quorum
        assert await page.eval("document.querySelector('#response-A pre, #response-A p') !== null")  # markdown

        # keyboard shortcut 1 votes for A
        await page.press("1")
        assert "Vote recorded: A better. Click another choice to change it." in await page.text()
        assert await page.eval("document.querySelector('button[value=A]').getAttribute('aria-pressed')") == "true"
        votes = web_votes(site)
        perm = permutation(site, post_id)
        assert len(votes) == 1 and votes[0]["shown_choice"] == "A" and votes[0]["winner"] == perm[0]
        assert votes[0]["display_name"] == "Rita"

        # a click on B better changes the vote: still one row, the audit log keeps the change
        await page.click("button[value=B]")
        assert "Vote changed from A better to B better." in await page.text()
        votes = web_votes(site)
        assert len(votes) == 1 and votes[0]["shown_choice"] == "B" and votes[0]["winner"] == perm[1]
        assert rows(site, "SELECT COUNT(*) AS n FROM auditlog WHERE action = 'vote.change'")[0]["n"] == 1

        # a correction of response A (only the edited response becomes a correction)
        await page.eval("document.getElementById('fix').open = true;"
                        "document.getElementById('fix_A').value = 'Corrected answer.\\nWith a second line.'")
        await page.click("#fix button[type=submit]")
        assert "Thanks! Your correction of response A is saved." in await page.text()
        fixes = rows(site, "SELECT position, text FROM correction")
        assert fixes == [{"position": perm[0], "text": "Corrected answer.\nWith a second line."}]

        # criterion scores attach to the vote
        await page.eval("document.getElementById('score').open = true;"
                        "document.getElementById('crit_0').value = '4'")
        await page.click("#score button[type=submit]")
        assert "Scores saved: helpfulness 4" in await page.text()
        scores = web_votes(site)[0]["scores"]
        assert (json.loads(scores) if isinstance(scores, str) else scores) == {"helpfulness": 4}

        # n: the next item; s: skip it (the page says so and deals the next one, here: none left)
        await page.press("n")
        second = int((await page.eval("location.pathname")).rsplit("/", 1)[1])
        assert second != post_id
        await page.press("s")
        body = await page.text()
        assert "Skipped. You won't be asked about this item again." in body
        assert "Nothing left for you to label in pairs right now." in body
        assert rows(site, "SELECT COUNT(*) AS n FROM skip")[0]["n"] == 1

        # two more voters (on Slack) bring the first item to its quorum: the page now reveals it
        slack_post = post_id_for(site, votes[0]["item_id"])
        for user in ("U1", "U2"):
            site.service.cast_vote(VoteCast(Actor("slack", "T1", user), slack_post, "A"))
        await page.goto(f"{site.base}/vote/pairs/{post_id}")
        body = await page.text()
        assert "3/3 votes" in body and "Models:" in body and "alpha" in body and "beta" in body

        # three responses: the Rank… form, best first
        await page.goto(site.invite("triples", "Rita"))
        labels = await page.eval("[...document.querySelectorAll('#vote button .label')].map(b => b.textContent)")
        assert labels == ["A best", "B best", "C best", "Tie", "All bad"]
        triple_post = int((await page.eval("location.pathname")).rsplit("/", 1)[1])
        await page.eval("document.getElementById('rank').open = true;"
                        "document.getElementById('rank_1').value = 'C';"
                        "document.getElementById('rank_2').value = 'A';"
                        "document.getElementById('rank_3').value = 'B'")
        await page.click("#rank button[type=submit]")
        assert "Vote recorded: Ranking C>A>B. Click another choice to change it." in await page.text()
        tperm = permutation(site, triple_post)
        ranked = [v for v in web_votes(site) if v["post_id"] == triple_post]
        assert len(ranked) == 1 and ranked[0]["outcome"] == "rank"
        stored = ranked[0]["ranking"]
        assert (json.loads(stored) if isinstance(stored, str) else stored) == [tperm[2], tperm[0], tperm[1]]
        # the same person (same name) is one annotator across both campaigns
        assert len({v["annotator_id"] for v in web_votes(site)}) == 1

        if os.environ.get("VOTE_SCREENSHOT"):  # a picture for people to look at
            shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(os.environ["VOTE_SCREENSHOT"]).write_bytes(__import__("base64").b64decode(shot["data"]))

        # flag with a reason
        await page.eval("document.getElementById('flag').open = true;"
                        "document.getElementById('flag-reason').value = 'Two answers are prime.'")
        await page.click("#flag button[type=submit]")
        assert "Thanks, the item is flagged for an admin to review." in await page.text()
        assert rows(site, "SELECT reason FROM flag") == [{"reason": "Two answers are prime."}]


def post_id_for(site: Site, item_id: int) -> int:
    """A Slack channel post of the item, for the other voters."""
    from storage.models import Post

    with site.db.write() as s:
        post = Post(item_id=item_id, platform="slack", channel="C1", permutation=[0, 1], message_id="m1")
        s.add(post)
        s.flush()
        return int(post.id)
