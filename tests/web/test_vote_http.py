"""The voting page over HTTP against the real server (SQLite and PostgreSQL): invite links are checked
(forged, altered, expired and withdrawn links get a clear 4xx and change nothing), every POST needs our
Origin and the session's CSRF token, posts are personal, admins vote from their dashboard session, and
`/label invite` makes the same kind of link as `labelbot invite`."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from bot.adapters.commands import handle
from bot.core import invites
from bot.core.events import Actor
from storage.models import Invite, utcnow
from tests.dashboard.conftest import ADMIN_TOKEN

from .conftest import CLI, Site, client, confirmation, open_invite, submit


def state(site: Site) -> tuple[int, ...]:
    """Everything a refused request must leave as it was."""
    return tuple(site.count(t) for t in ("vote", "annotator", "post", "skip", "flag", "correction", "comment"))


async def test_forged_altered_expired_and_withdrawn_links_are_refused(site: Site):
    good = site.invite("pairs", "Nia")
    token = good.split("t=", 1)[1]
    _body, mac = token.split(".")
    key = invites.signing_key(site.db)
    altered = invites._b64(b'{"exp":9999999999,"i":2,"p":"invite"}')  # another invite id, the old signature
    forged = invites.sign(b"not-the-key" * 3, {"p": "invite", "i": 1, "exp": 2**40})
    voter_cookie = invites.sign(key, {"p": "voter", "i": 1, "exp": 2**40})  # a cookie is not a link
    before = state(site)
    async with client() as http:
        cases = {
            "forged": (f"{site.base}/vote/invite?t={forged}", 403),
            "altered": (f"{site.base}/vote/invite?t={altered}.{mac}", 403),
            "garbage": (f"{site.base}/vote/invite?t=%00%ff..", 403),
            "missing": (f"{site.base}/vote/invite", 403),
            "other purpose": (f"{site.base}/vote/invite?t={voter_cookie}", 403),
            "expired token": (f"{site.base}/vote/invite?t={invites.sign(key, {'p': 'invite', 'i': 1, 'exp': 1})}", 410),
        }
        for name, (url, status) in cases.items():
            resp, html = await open_invite(http, url)
            assert resp.status == status, (name, resp.status)
            assert "not valid" in html or "expired" in html, name
            assert "lb_voter" not in resp.cookies and not http.cookie_jar.filter_cookies(site.base), name
        assert state(site) == before

        # the row decides too: an invite whose row expired, or was withdrawn, stops working (and its cookie)
        resp, html = await open_invite(http, good)
        assert resp.status == 200 and "Which response is better?" in html
        with site.db.write() as s:
            row = s.get(Invite, 1)
            row.expires_at = utcnow() - timedelta(minutes=1)
            s.add(row)
        resp, html = await open_invite(http, good)
        assert resp.status == 410 and "expired" in html
        with site.db.write() as s:
            row = s.get(Invite, 1)
            row.expires_at = utcnow() + timedelta(days=1)
            s.add(row)
        assert (await http.get(f"{site.base}/vote/pairs")).status == 200  # the session works again
        notice = site.service.revoke_invite(CLI, "pairs", 1)
        assert "withdrawn" in notice.text
        resp = await http.get(f"{site.base}/vote/pairs")
        assert resp.status == 401 and "invite link" in await resp.text()
        resp, html = await open_invite(http, good)
        assert resp.status == 403 and "withdrawn" in html


async def test_posts_need_our_origin_the_csrf_token_and_clean_input(site: Site):
    async with client() as http:
        resp, page = await open_invite(http, site.invite("pairs"))
        item = str(resp.url)
        assert resp.status == 200
        before = state(site)
        for origin in (None, "https://evil.example", "null"):
            status, html = await submit(http, site.base, page, "vote", {"choice": "A"}, origin=origin)
            assert status == 403 and "did not come from the voting page" in html, origin
        status, html = await submit(http, site.base, page, "vote", {"choice": "A", "csrf": "forged"})
        assert status == 403 and "form has expired" in html
        status, html = await submit(http, site.base, page, "comment", {"text": "a\x00b"})
        assert status == 400 and "NUL" in html
        status, html = await submit(http, site.base, page, "vote", {"choice": "Z"})
        assert status == 400 and "no response Z" in html  # the core's refusal, on the item page
        assert "Which response is better?" in html
        status, html = await submit(http, site.base, page, "vote", {"rank_1": "A"}, to="rank")
        assert status == 400 and "every response" in html
        status, html = await submit(http, site.base, page, "vote", {}, to="delete")
        assert status == 404
        status, html = await submit(http, site.base, page, "fix", {"fix_A": "", "fix_B": ""})
        assert status == 400 and "Edit at least one response" in html
        status, html = await submit(http, site.base, page, "scores", {})
        assert status == 400 and "at least one criterion" in html
        assert state(site)[:1] == before[:1] and state(site)[3:] == before[3:]

        # scores before a vote are refused by the core, like on Slack
        status, html = await submit(http, site.base, page, "scores", {"crit_0": "5"})
        assert status == 400 and "Vote on the item first" in html

        # the happy path, and a double submit of the same form adds nothing
        status, html = await submit(http, site.base, page, "vote", {"choice": "tie"})
        assert status == 200 and confirmation(html) == "Vote recorded: Tie. Click another choice to change it."
        status, html = await submit(http, site.base, page, "vote", {"choice": "tie"})
        assert confirmation(html) == "Your vote (Tie) was already recorded."
        assert site.count("vote") == 1

        # a comment (the reason box of a split item posts here too) is kept on the item
        status, html = await submit(http, site.base, html, "comment", {"text": "Both miss the point."})
        assert status == 200 and confirmation(html) == "Comment saved."
        with site.db.engine.connect() as conn:
            assert conn.execute(text("SELECT text, platform FROM comment")).all() == [("Both miss the point.", "web")]

    # someone else cannot see or vote through this person's post, nor vote in another campaign
    async with client() as other:
        resp, _ = await open_invite(other, site.invite("pairs", "Omar"))
        mine = str(resp.url)
        assert mine != item
        assert (await other.get(item)).status == 404
        assert (await other.get(f"{site.base}/vote/triples")).status == 401
        assert (await other.get(f"{site.base}/vote/no%00such")).status == 404
        assert (await other.get(f"{site.base}/vote/pairs/999999999999999999")).status == 404
        status, html = await submit(other, site.base, await (await other.get(mine)).text(), "vote", {"choice": "A"})
        assert status == 200
    async with client() as stranger:
        resp = await stranger.get(item)
        assert resp.status == 401


async def test_reload_shows_the_same_item_and_skips_deal_the_next(site: Site):
    async with client() as http:
        resp, page = await open_invite(http, site.invite("pairs"))
        first = str(resp.url)
        again = await http.get(f"{site.base}/vote/pairs")
        assert str(again.url) == first  # no new post, no new shuffle, on reload
        assert site.count("post") == 1
        status, html = await submit(http, site.base, page, "skip", {})
        assert status == 200 and "Skipped." in confirmation(html) and "/label next" not in html
        assert site.count("post") == 2


async def test_admins_vote_from_their_dashboard_session(site: Site):
    async with client() as http:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        resp = await http.get(f"{site.base}/vote", headers=headers)
        html = await resp.text()
        assert resp.status == 200 and "/vote/pairs" in html and "/vote/triples" in html
        resp = await http.get(f"{site.base}/vote/triples", headers=headers)
        page = await resp.text()
        assert resp.status == 200 and "admin token (admin)" in page
        fields = {**dict(__import__("re").findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))}
        resp = await http.post(str(resp.url) + "/vote", data={**fields, "choice": "B"},
                               headers={**headers, "Origin": site.base})
        assert "Vote recorded: B better." in confirmation(await resp.text())
        with site.db.engine.connect() as conn:
            assert conn.execute(text("SELECT platform, workspace, user_id FROM annotator")).all() == [
                ("web", "dashboard", "admin token")]
        assert (await http.get(f"{site.base}/vote")).status == 401  # without the session: nobody


async def test_label_invite_command_makes_a_working_private_link(site: Site):
    refused = handle(site.service, site.settings, Actor("slack", "T1", "UNOBODY"), "invite Dana campaign=pairs")
    assert not refused.ok and "only labelbot admins" in refused.text
    reply = handle(site.service, site.settings, Actor("slack", "T1", "UADMIN"), "invite Dana Scully campaign=pairs")
    assert reply.ok and reply.ephemeral and "Dana Scully" in reply.text
    url = reply.text.rsplit(" ", 1)[1]
    assert url.startswith(f"{site.base}/vote/invite?t=")
    with site.db.engine.connect() as conn:
        details = conn.execute(text("SELECT details FROM auditlog WHERE action = 'invite.create'")).scalar_one()
    assert url.split("t=")[1] not in str(details)  # the audit log never holds the credential
    async with client() as http:
        resp, html = await open_invite(http, url)
        assert resp.status == 200 and "Signed in as Dana Scully" in html


async def test_split_votes_ask_for_a_reason_and_gold_items_give_feedback(site: Site, tmp_path):
    from bot.core.events import VoteCast
    from bot.core.importer import validate_row
    from bot.core.service import CampaignSpec

    picture = tmp_path / "answer.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    site.service.create_campaign(CampaignSpec("split", overlap=2, gold_rate=0.0), CLI)
    row = {"id": "s-0", "prompt": "Pick one.", "gold": {"best": 0, "explanation": "The first is right."},
           "responses": [{"model": "m0", "text": "first", "image": str(picture)}, {"model": "m1", "text": "second"}]}
    site.service.import_items("split", [validate_row(row, 1)[0]], CLI)
    slack_post = site.service.prepare_posts("split", "slack", "C1", 1)[0].post_id
    site.service.cast_vote(VoteCast(Actor("slack", "T1", "U1"), slack_post, "tie"))
    async with client() as http:
        resp, page = await open_invite(http, site.invite("split", "Kim"))
        item = str(resp.url)
        # a local image file is served to this voter only (and shown on the page)
        img = await http.get(f"{item}/media/{'A' if 'media/A/image' in page else 'B'}/image")
        assert img.status == 200 and (await img.read()) == picture.read_bytes()
        assert (await http.get(f"{item}/media/C/image")).status == 404
        wrong = "both_bad"  # against the gold answer and against the tie: the votes split
        status, html = await submit(http, site.base, page, "vote", {"choice": wrong})
        said = confirmation(html)
        assert "Vote recorded: Both bad." in said
        assert "This was a check item: the reference answer is" in said and "The first is right." in said
        assert "one more vote was requested" in said
        assert 'id="reason-request"' in html and "one-line reason" in html  # the reason box, right there
        status, html = await submit(http, site.base, html, "comment", {"text": "Neither names a source."})
        assert status == 200 and confirmation(html) == "Comment saved."
    async with client() as other:
        assert (await other.get(f"{item}/media/A/image")).status == 401


def test_the_web_platform_implements_the_contract():
    from bot.adapters.contract import ChatPlatform
    from bot.adapters.web.platform import WebPlatform

    platform = WebPlatform()
    assert isinstance(platform, ChatPlatform) and platform.name == "web" and not platform.healthy()
