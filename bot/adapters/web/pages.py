"""aiohttp handlers of the browser voting page: translate the request -> call the core -> render the page.

Routes (all under /vote, mounted on `labelbot serve`'s HTTP server next to the dashboard):
- GET  /vote/invite?t=TOKEN          open an invite link: sets the voter cookie, redirects to the campaign
- GET  /vote                         the campaigns an admin may vote on (invited voters use their link)
- GET  /vote/{campaign}              the person's next item (their unanswered one first): redirect to it
- GET  /vote/{campaign}/{post}       one item: prompt, shuffled responses, buttons, forms
- POST /vote/{campaign}/{post}/{action}   vote | rank | scores | fix | skip | flag | comment
- GET  /vote/{campaign}/{post}/media/{letter}/{kind}   a response's local image or audio file

Posts are personal: each voter is dealt posts in a channel of their own (their annotator id), so one
person's page never shows another's shuffle and nobody votes through somebody else's post. A POST
answers with a redirect to the item (the confirmation travels in a signed, short-lived cookie) or,
when the core refuses, with the item page itself, the reason on top and a 4xx status.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import mimetypes
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.core import invites
from bot.core.errors import (
    CampaignPaused,
    ConflictError,
    InvalidInput,
    LabelingError,
    LimitReached,
    NotFound,
    PermissionDenied,
)
from bot.core.events import (
    MAX_CORRECTION_CHARS,
    CommentAdded,
    CorrectionSubmitted,
    CriteriaScored,
    ItemFlagged,
    ItemSkipped,
    RankingSubmitted,
    TaskRequested,
    VoteCast,
)
from bot.core.replies import REASON_REQUEST, SORRY, PostView
from bot.server import ServerContext
from storage.domain import CampaignStatus, Platform
from storage.models import Post

from . import render
from .sessions import NONCE, Identity, Refused, Sessions, campaign_path

log = logging.getLogger("labelbot.web.vote")

TEMPLATES = Path(__file__).parent / "templates"
ACTIONS = ("vote", "rank", "scores", "fix", "skip", "flag", "comment")
STATUS = [(invites.ExpiredLink, 410), (NotFound, 404), (PermissionDenied, 403), (CampaignPaused, 409),
          (ConflictError, 409), (LimitReached, 429), (InvalidInput, 400)]
Handler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


def status_of(exc: LabelingError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def security_headers(response: web.StreamResponse, nonce: str | None = None) -> None:
    """The dashboard's policy, plus images and audio from https URLs (model answers may link them) and a
    same-origin referrer, so browsers send the Origin header the POST routes check."""
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src 'self' data: https:; media-src 'self' data: https:; style-src 'unsafe-inline'; "
        f"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; script-src {script}")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"


def campaign_name(request: web.Request) -> str:
    """The campaign in the path; names no campaign can have (control characters, too long) are a 404."""
    name = request.match_info["campaign"]
    if not name or len(name) > 100 or any(not c.isprintable() or c.isspace() for c in name):
        raise Refused(404, "There is no such campaign.")
    return name


def post_number(request: web.Request) -> int:
    """The post id in the path; numbers no row can have (over 32 bits) are a 404, not a database error."""
    value = int(request.match_info["post"])
    if value > 2**31 - 1:
        raise Refused(404, "That item is not one of yours. Open the campaign's page for your next item.")
    return value


def guarded(fn: Handler) -> Handler:
    """Refusals and core errors become a page with their status; anything else a 500 page that says sorry."""

    @functools.wraps(fn)
    async def wrapper(self: VotePages, request: web.Request) -> web.StreamResponse:
        try:
            return await fn(self, request)
        except web.HTTPException:
            raise
        except Refused as exc:
            return self.message(exc.status, "Not possible", exc.message)
        except LabelingError as exc:
            return self.message(status_of(exc), "Not possible", render.for_the_page(exc.message))
        except Exception:
            log.exception("voting page failed")
            return self.message(500, "Something went wrong", SORRY)

    return wrapper


class VotePages:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.service = ctx.service
        self.sessions = Sessions(ctx)
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(markdown=render.markdown, ordinal=render.ordinal, media_kind=render.media_kind,
                                campaign_path=campaign_path, score_labels=render.SCORE_LABELS)

    def register(self, app: web.Application) -> None:
        post = r"{post:[0-9]{1,18}}"
        app.router.add_get("/vote", self.index)
        app.router.add_get("/vote/invite", self.open_invite)
        app.router.add_get("/vote/{campaign}", self.next_item)
        app.router.add_get(f"/vote/{{campaign}}/{post}", self.item)
        app.router.add_post(f"/vote/{{campaign}}/{post}/{{action}}", self.act)
        app.router.add_get(f"/vote/{{campaign}}/{post}/media/{{letter:[A-Z]}}/{{kind:image|audio}}", self.media)

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    # ------------------------------------------------------------------ rendering

    def page(self, template: str, *, status: int = 200, nonce: str | None = None, **values: Any) -> web.Response:
        html = self.env.get_template(template).render(nonce=nonce, **values)
        resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        security_headers(resp, nonce)
        return resp

    def message(self, status: int, title: str, text: str, *, links: list[tuple[str, str]] | None = None,
                who: Identity | None = None) -> web.Response:
        return self.page("vote_message.html", status=status, title=title, text=text, links=links or [], who=who)

    def redirect(self, location: str) -> web.HTTPSeeOther:
        resp = web.HTTPSeeOther(location)
        security_headers(resp)
        return resp

    async def who_or_refuse(self, request: web.Request, campaign: str | None) -> Identity:
        who = await self.sessions.identity(request, campaign)
        if who is None:
            raise Refused(401, "To vote here, open the invite link you were sent (ask an admin for one), or sign in "
                               "to the dashboard as an admin first.")
        return who

    # ------------------------------------------------------------------ pages

    @guarded
    async def index(self, request: web.Request) -> web.StreamResponse:
        who = await self.sessions.identity(request, None)
        if who is None:
            return self.message(401, "labelbot voting", "To vote, open the invite link you were sent. Admins: sign in "
                                "to the dashboard first, then come back here.",
                                links=[("Sign in to the dashboard", "/dashboard/login")])
        camps = [c for c in await self.db(self.service.list_campaigns) if c.status == CampaignStatus.ACTIVE]
        links = [(c.name, campaign_path(c.name)) for c in camps]
        text = "Pick a campaign to vote in." if links else "There is no active campaign."
        return self.message(200, "Vote", text, links=links, who=who)

    @guarded
    async def open_invite(self, request: web.Request) -> web.StreamResponse:
        """Check the link (signature, expiry, revocation), then trade it for a cookie and a clean URL."""
        voter = await self.db(invites.redeem, self.service.db, request.query.get("t", ""))
        resp = self.redirect(campaign_path(voter.campaign))
        await self.sessions.voter_cookie(resp, voter)
        raise resp

    @guarded
    async def next_item(self, request: web.Request) -> web.StreamResponse:
        campaign = campaign_name(request)
        who = await self.who_or_refuse(request, campaign)
        task, _new = await self.db(self.service.resume_or_next,
                                  TaskRequested(who.actor, campaign, channel=who.actor.user_id))
        if task is None:
            flash = await self.sessions.take_flash(request, None)
            resp = self.page("vote_message.html", title="All done",
                             text=f"Nothing left for you to label in {campaign} right now. Thank you!",
                             links=[], who=who, flash=flash)
            if flash:
                self.sessions.clear_flash(resp, campaign)
            return resp
        raise self.redirect(f"{campaign_path(campaign)}/{task.post_id}")

    def _own_view(self, who: Identity, campaign: str, post_id: int) -> PostView:
        """The post, when it was dealt to this person in this campaign; NotFound for anyone else's."""
        with self.service.db.read() as s:
            post = s.get(Post, post_id)
        if (post is None or post.platform != Platform.WEB or post.workspace != who.actor.workspace
                or post.channel != who.actor.user_id):
            raise NotFound("That item is not one of yours. Open the campaign's page for your next item.")
        view = self.service.post_view(post_id)
        if view.campaign != campaign:
            raise NotFound("That item is not one of yours. Open the campaign's page for your next item.")
        return view

    def _item_state(self, who: Identity, campaign: str, post_id: int) -> tuple[PostView, str | None, str]:
        """Everything an item page shows, read in one trip to the database threads."""
        view = self._own_view(who, campaign, post_id)
        mine = self.service.shown_choice_of(who.actor, post_id)
        _name, guidelines, _version = self.service.guidelines(post_id=post_id)
        return view, mine, guidelines

    async def render_item(self, request: web.Request, who: Identity, campaign: str, post_id: int, *,
                          status: int = 200, flash: dict[str, Any] | None = None) -> web.Response:
        view, mine, guidelines = await self.db(self._item_state, who, campaign, post_id)
        nonce = secrets.token_urlsafe(16)
        base = f"{campaign_path(view.campaign)}/{view.post_id}"
        return self.page(
            "vote.html", status=status, nonce=nonce, view=view, who=who, base=base, flash=flash, mine=mine,
            title=render.title(view), buttons=render.vote_buttons(view, mine), status_lines=render.status_lines(view),
            heading=functools.partial(render.response_heading, view=view), guidelines=guidelines,
            ranking=render.ranking_of(mine, view.n), csrf=await self.sessions.csrf(who),
            form_nonce=secrets.token_urlsafe(12), reason_request=REASON_REQUEST,
            mine_label=render.choice_label(mine) if mine else None)

    @guarded
    async def item(self, request: web.Request) -> web.StreamResponse:
        campaign = campaign_name(request)
        who = await self.who_or_refuse(request, campaign)
        post_id = post_number(request)
        flash = await self.sessions.take_flash(request, post_id) or await self.sessions.take_flash(request, None)
        resp = await self.render_item(request, who, campaign, post_id, flash=flash)
        if flash:
            self.sessions.clear_flash(resp, campaign)
        return resp

    @guarded
    async def media(self, request: web.Request) -> web.StreamResponse:
        campaign = campaign_name(request)
        who = await self.who_or_refuse(request, campaign)
        view = await self.db(self._own_view, who, campaign, post_number(request))
        shown = {r.letter: r for r in view.responses}.get(request.match_info["letter"])
        value = getattr(shown, request.match_info["kind"], None) if shown else None
        if render.media_kind(value) != "served":
            raise Refused(404, "That response has no such file.")
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise Refused(404, "That response's file is missing on the server.")
        resp = web.FileResponse(path, headers={"Content-Type": mimetypes.guess_type(path.name)[0]
                                               or "application/octet-stream"})
        security_headers(resp)
        return resp

    # ------------------------------------------------------------------ actions

    @guarded
    async def act(self, request: web.Request) -> web.StreamResponse:
        campaign = campaign_name(request)
        self.sessions.check_origin(request)  # before anything is read or written
        who = await self.who_or_refuse(request, campaign)
        form = await request.post()
        await self.sessions.check_form(who, form)
        if any("\x00" in str(v) for v in form.values()):
            raise Refused(400, "The form held characters that cannot be stored (NUL); nothing was changed.")
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise Refused(404, "There is no such action.")
        nonce = str(form.get("nonce", ""))
        if not NONCE.match(nonce):
            raise Refused(400, "This form is incomplete; reload the page and try again.")
        post_id = post_number(request)
        view = await self.db(self._own_view, who, campaign, post_id)
        try:
            lines, ok, ask, where = await self.db(self._apply, who, view, action, form, f"web:{nonce}")
        except LabelingError as exc:
            flash = {"lines": [render.for_the_page(exc.message)], "ok": False, "ask_reason": False}
            return await self.render_item(request, who, campaign, post_id, status=status_of(exc), flash=flash)
        resp = self.redirect(where)
        await self.sessions.set_flash(resp, campaign, None if action == "skip" else post_id,
                                      [render.for_the_page(x) for x in lines], ok=ok, ask_reason=ask)
        raise resp

    def _apply(self, who: Identity, view: PostView, action: str, form: Any, did: str) -> tuple[
            list[str], bool, bool, str]:
        """Run one action through the core: (confirmation lines, ok, ask for a reason, where to go next)."""
        actor, post_id = who.actor, view.post_id
        here = f"{campaign_path(view.campaign)}/{post_id}"
        if action == "vote":
            choice = str(form.get("choice", ""))
            rec = self.service.cast_vote(VoteCast(actor, post_id, choice, delivery_id=f"{did}:v:{choice}"[:128]))
            return render.vote_confirmation(rec), True, rec.ask_reason, here
        if action == "rank":
            order = [str(form.get(f"rank_{i + 1}", "")) for i in range(view.n)]
            if not all(order):
                raise InvalidInput("Put every response in exactly one place, best first.")
            rec = self.service.submit_ranking(RankingSubmitted(actor, post_id, order,
                                                               delivery_id=f"{did}:r:{''.join(order)}"[:128]))
            return render.vote_confirmation(rec), True, rec.ask_reason, here
        if action == "scores":
            scores = {name: str(form[f"crit_{i}"]) for i, name in enumerate(view.criteria)
                      if str(form.get(f"crit_{i}", "")).strip()}
            if not scores:
                raise InvalidInput("Pick a score for at least one criterion.")
            digest = hashlib.sha256(repr(sorted(scores.items())).encode()).hexdigest()[:12]
            notice = self.service.submit_scores(CriteriaScored(actor, post_id, scores, delivery_id=f"{did}:s:{digest}"))
            return [notice.text], notice.ok, False, here
        if action == "fix":
            edits = []
            for r in view.responses:
                text = str(form.get(f"fix_{r.letter}", "")).replace("\r\n", "\n")  # browsers send CRLF
                if text.strip() and text.strip() != r.text.strip():
                    edits.append(CorrectionSubmitted(actor, post_id, r.letter, text, delivery_id=f"{did}:f:{r.letter}"))
            if not edits:
                raise InvalidInput("Edit at least one response before saving a correction.")
            return [" ".join(self.service.submit_correction(e).text for e in edits)], True, False, here
        if action == "skip":
            notice = self.service.skip(ItemSkipped(actor, post_id, delivery_id=f"{did}:k"))
            return [notice.text], notice.ok, False, campaign_path(view.campaign)
        if action == "flag":
            reason = str(form.get("reason", "")).strip()
            notice = self.service.flag(ItemFlagged(actor, post_id, reason, delivery_id=f"{did}:g"))
            return [notice.text], notice.ok, False, here
        text = str(form.get("text", "")).replace("\r\n", "\n")
        if not text.strip():
            raise InvalidInput("Write something first.")
        if len(text) > MAX_CORRECTION_CHARS:
            raise InvalidInput(f"Comments are limited to {MAX_CORRECTION_CHARS} characters.")
        thread = f"web-{post_id}"  # the first comment makes the post a thread, which `add_comment` files under
        self.service.attach_message(post_id, thread, thread_id=thread)
        saved = self.service.add_comment(CommentAdded(actor, Platform.WEB, thread, text, delivery_id=f"{did}:c"))
        if saved is None:
            raise NotFound("Comments cannot be added to this item.")
        return [saved.text], True, False, here
