"""Core replies -> Slack Block Kit. Pure functions, no I/O.

User-provided text (prompts, responses, guidelines) goes into `plain_text` sections so nothing a model
wrote is interpreted as markup and no escaping can push a chunk past Slack's limits. Long text is
split across blocks; what does not fit one message (50 blocks, ~12k characters of block text, beyond
which Slack answers `msg_blocks_too_long`) is previewed inline with an explicit "continues in the
thread" note and posted in full in the item's thread: never cut silently. `check_blocks` /
`check_view` validate every payload against the limits in DESIGN §3 (used by tests and the fake
Slack server).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from bot.core.replies import LETTERS, GoldFeedback, PostView, ShownResponse, VoteRecorded, choice_label

SECTION_MAX = 3000
CHUNK = 2900  # leave headroom under SECTION_MAX
MESSAGE_BLOCKS_MAX = 50
MODAL_BLOCKS_MAX = 100
MESSAGE_TEXT_BUDGET = 11000  # block text per message; Slack rejects around 13.2k (bolt-js#2509)
MIN_PREVIEW = 300
ACTIONS_MAX = 25
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
ACTION_ID_MAX = 255
BLOCK_ID_MAX = 255
HEADER_MAX = 150
PRIVATE_METADATA_MAX = 3000
MODAL_TITLE_MAX = 24
INPUT_MAX = 3000
OPTION_TEXT_MAX = 75
OPTIONS_MAX = 100
CONTEXT_ELEMENTS_MAX = 10
IMAGE_URL_MAX = 3000
ALT_TEXT_MAX = 2000
ORDINALS = ["1st (best)", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th"]


# ----------------------------------------------------------------------------------------- text helpers


def split_text(text: str, size: int = CHUNK) -> list[str]:
    """Split `text` into parts of at most `size` characters, preferring paragraph, line, then word breaks.

    The parts concatenate back to exactly `text`: nothing is lost.
    """
    if size < 1:
        raise ValueError("size must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > size:
        window = rest[:size]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            pos = window.rfind(sep)
            if pos >= size * 0.6:
                cut = pos + len(sep)
                break
        if cut <= 0:
            cut = size
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest or not parts:
        parts.append(rest)
    return parts


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, size: int) -> str:
    """A one-line label: whitespace collapsed, ellipsis when shortened (labels only, never content)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1].rstrip() + "…"


def text_sections(text: str) -> list[dict[str, Any]]:
    """Plain-text sections of at most CHUNK characters each (an empty text gives one '(empty)')."""
    if not text.strip():
        return [{"type": "section", "text": plain("(empty)")}]
    return [{"type": "section", "text": plain(part)} for part in split_text(text) if part.strip()]


def text_hash(text: str) -> str:
    """Short fingerprint of a response text (lets a correction modal see which inputs were edited)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def is_url(value: str | None) -> bool:
    if not value:
        return False
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


# ----------------------------------------------------------------------------------------- item message


@dataclass
class Media:
    """A local image/audio file to upload into the item's thread (URLs are rendered inline instead)."""

    letter: str
    kind: str  # image | audio
    path: str


@dataclass
class RenderedPost:
    text: str
    blocks: list[dict[str, Any]]
    thread: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (text, blocks) per reply
    media: list[Media] = field(default_factory=list)


def _allocate(lengths: Sequence[int], budget: int) -> list[int]:
    """Characters of each segment to show inline: all of it when everything fits, else a fair share."""
    if sum(lengths) <= budget:
        return list(lengths)
    shares = [0] * len(lengths)
    remaining = list(range(len(lengths)))
    left = budget
    while remaining:
        fair = left // len(remaining)
        small = [i for i in remaining if lengths[i] <= fair]
        if not small:
            for i in remaining:
                shares[i] = max(MIN_PREVIEW, fair)
            break
        for i in small:
            shares[i] = lengths[i]
            left -= lengths[i]
        remaining = [i for i in remaining if i not in small]
    return [min(s, n) for s, n in zip(shares, lengths, strict=True)]


def _preview(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    return split_text(text, chars)[0]


def _title(view: PostView) -> str:
    return "Which response is better?" if view.n == 2 else f"Which of these {view.n} responses is best?"


def status_text(view: PostView) -> str:
    """Progress before quorum (no tallies, no models: no herding); the result once revealed."""
    if not view.revealed or view.result is None:
        return f"*{view.vote_count}/{view.quorum} votes*"
    res = view.result
    consensus = "no consensus (votes split)" if res.consensus is None else _consensus_label(res.consensus)
    tallies = " · ".join(f"{choice_label(k)}: {v}" for k, v in sorted(res.tallies.items(), key=lambda kv: -kv[1]))
    models = ", ".join(f"{r.letter} = `{escape(r.model or '?')}`" for r in view.responses)
    return (f"*{view.vote_count}/{view.quorum} votes* · Result: *{escape(consensus)}* "
            f"(agreement {res.agreement:.0%}) · {escape(tallies)}\nModels: {models}")


def _consensus_label(consensus: str) -> str:
    if ">" in consensus:
        return "ranking " + consensus
    return choice_label(consensus)


def vote_buttons(view: PostView) -> list[dict[str, Any]]:
    p = view.post_id
    two = view.n == 2
    buttons = [button(f"{r.letter} {'better' if two else 'best'}", f"lbl:vote:{p}:{r.letter}", p)
               for r in view.responses]
    if not two:
        buttons.append(button("Rank…", f"lbl:rank:{p}", p, style="primary"))
    buttons.append(button("Tie", f"lbl:vote:{p}:tie", p))
    buttons.append(button("Both bad" if two else "All bad", f"lbl:vote:{p}:both_bad", p))
    return buttons


def tool_buttons(view: PostView) -> list[dict[str, Any]]:
    p = view.post_id
    buttons = [button("Skip", f"lbl:skip:{p}", p), button("Suggest correction", f"lbl:fix:{p}", p)]
    if view.criteria:
        buttons.append(button("Rate criteria", f"lbl:score:{p}", p))
    buttons += [button("Flag", f"lbl:flag:{p}", p, style="danger"), button("Guidelines", f"lbl:guide:{p}", p)]
    return buttons


def button(text: str, action_id: str, post_id: int, style: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "button", "text": plain(shorten(text, BUTTON_TEXT_MAX)), "action_id": action_id,
                           "value": str(post_id)}
    if style:
        out["style"] = style
    return out


def _response_label(r: ShownResponse, view: PostView) -> str:
    label = f"*Response {r.letter}*"
    if view.revealed and r.model:
        label += f" — `{escape(r.model)}`"
    return label


def item_message(view: PostView, *, budget: int = MESSAGE_TEXT_BUDGET) -> RenderedPost:
    """The channel message for a post: prompt, responses in shown order, status, buttons."""
    segments = [view.prompt_text] + [r.text for r in view.responses]
    inline = _allocate([len(s) for s in segments], budget)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(shorten(_title(view), HEADER_MAX))},
        {"type": "context", "elements": [mrkdwn(
            f"Campaign *{escape(view.campaign)}* · item `{escape(view.external_id)}` · "
            f"guidelines v{view.guideline_version}")]},
    ]
    thread: list[tuple[str, list[dict[str, Any]]]] = []
    media: list[Media] = []
    names = ["Prompt"] + [f"Response {r.letter}" for r in view.responses]
    for idx, (name, text, shown) in enumerate(zip(names, segments, inline, strict=True)):
        resp = view.responses[idx - 1] if idx else None
        label = "*Prompt*" if resp is None else _response_label(resp, view)
        if idx == 1:
            blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": mrkdwn(label)})
        preview = _preview(text, shown)
        blocks += text_sections(preview)
        if len(preview) < len(text):
            more = len(text) - len(preview)
            blocks.append({"type": "context", "elements": [mrkdwn(
                f":arrow_down: _{name} continues in this message's thread ({more:,} more characters)._")]})
            thread += long_text_messages(f"{name} — full text", text)
        if resp is not None:
            blocks += _media_blocks(resp, media)
    blocks.append({"type": "divider"})
    blocks.append({"type": "context", "block_id": "lbl_status", "elements": [mrkdwn(status_text(view))]})
    blocks.append({"type": "actions", "block_id": "lbl_vote", "elements": vote_buttons(view)})
    blocks.append({"type": "actions", "block_id": "lbl_tools", "elements": tool_buttons(view)})
    fallback = f"New item to label in {view.campaign}: {shorten(view.prompt_text, 150)}"
    return RenderedPost(fallback, blocks, thread, media)


def _media_blocks(resp: ShownResponse, media: list[Media]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if resp.image:
        if is_url(resp.image) and len(resp.image) <= IMAGE_URL_MAX:
            out.append({"type": "image", "image_url": resp.image, "alt_text": f"Response {resp.letter} image"})
        else:
            media.append(Media(resp.letter, "image", resp.image))
            out.append({"type": "context", "elements": [mrkdwn(
                f":frame_with_picture: Response {resp.letter} image is attached in the thread.")]})
    if resp.audio:
        if is_url(resp.audio):
            out.append({"type": "context", "elements": [mrkdwn(
                f":sound: <{resp.audio}|Listen to response {resp.letter}>")]})
        else:
            media.append(Media(resp.letter, "audio", resp.audio))
            out.append({"type": "context", "elements": [mrkdwn(
                f":sound: Response {resp.letter} audio is attached in the thread.")]})
    return out


def long_text_messages(title: str, text: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """A long text as one or more messages, each within the block and character limits."""
    per_message = max(1, min(MESSAGE_TEXT_BUDGET // CHUNK, MESSAGE_BLOCKS_MAX - 1))
    chunks = split_text(text) if text else [""]
    groups = [chunks[i : i + per_message] for i in range(0, len(chunks), per_message)]
    out = []
    for n, group in enumerate(groups, start=1):
        head = title if len(groups) == 1 else f"{title} (part {n}/{len(groups)})"
        blocks = [{"type": "section", "text": mrkdwn(f"*{escape(head)}*")}]
        blocks += [{"type": "section", "text": plain(c)} for c in group if c.strip()] or text_sections("")
        out.append((head, blocks))
    return out


# ----------------------------------------------------------------------------------------- confirmations


def vote_confirmation(rec: VoteRecorded) -> tuple[str, list[dict[str, Any]]]:
    """The private confirmation sent once the vote is committed."""
    lines = [f":white_check_mark: {rec.summary}"]
    if rec.gold is not None:
        lines.append(gold_text(rec.gold))
    if rec.extra_vote_requested:
        lines.append("The votes on this item split, so one more vote was requested.")
    if rec.reached_quorum:
        lines.append("That was the last vote this item needed; the result is now shown on the message.")
    text = "\n".join(lines)
    return text, [{"type": "section", "text": mrkdwn(part)} for part in split_text(escape(text))]


def gold_text(gold: GoldFeedback) -> str:
    if gold.correct:
        return "This was a check item, and your answer matches the reference. :tada:"
    expected = choice_label(gold.expected)
    out = f"This was a check item: the reference answer is *{expected}*."
    if gold.explanation:
        out += f" {gold.explanation}"
    if gold.guideline_excerpt:
        out += f"\nFrom the guidelines: {shorten(gold.guideline_excerpt, 600)}"
    return out


def notice_blocks(text: str, ok: bool = True) -> list[dict[str, Any]]:
    icon = ":white_check_mark:" if ok else ":warning:"
    return [{"type": "section", "text": mrkdwn(part)} for part in split_text(f"{icon} {text}")]


def guidelines_messages(name: str, text: str, version: int) -> list[tuple[str, list[dict[str, Any]]]]:
    return long_text_messages(f"Guidelines — {name} (version {version})", text)


def command_messages(text: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """A /label reply (our own mrkdwn) as one or more messages within the limits."""
    per = MESSAGE_TEXT_BUDGET // CHUNK
    parts = split_text(text)
    out = []
    for i in range(0, len(parts), per):
        group = parts[i : i + per]
        out.append(("".join(group)[:3000], [{"type": "section", "text": mrkdwn(p)} for p in group if p.strip()]))
    return out


# ----------------------------------------------------------------------------------------- modals


def metadata(**values: Any) -> str:
    out = json.dumps(values, separators=(",", ":"))
    if len(out) > PRIVATE_METADATA_MAX:
        raise ValueError("private_metadata too long")
    return out


def _modal(callback_id: str, title: str, blocks: list[dict[str, Any]], meta: str, submit: str = "Save") -> dict:
    return {"type": "modal", "callback_id": callback_id, "title": plain(title), "submit": plain(submit),
            "close": plain("Cancel"), "private_metadata": meta, "blocks": blocks}


def correction_modal(view: PostView, channel: str | None, message_ts: str | None) -> dict[str, Any]:
    """One input per response, pre-filled with its text; the ones edited become corrections."""
    hashes = {}
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [mrkdwn(
        "Edit the response you would correct and leave the others as they are. "
        "Your edit becomes training data for fine-tuning.")]}]
    for r in view.responses:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "text", "multiline": True,
                                   "max_length": INPUT_MAX}
        label = f"Response {r.letter}"
        hint = None
        if r.text and len(r.text) <= INPUT_MAX:
            element["initial_value"] = r.text
            hashes[r.letter] = text_hash(r.text)
        else:
            hashes[r.letter] = text_hash("")
            if r.text:
                label += f" (too long to pre-fill: {len(r.text):,} characters)"
                hint = ("This response is longer than a Slack text box holds, so it is not pre-filled. Write the "
                        "corrected version here (up to 3,000 characters) or reply in the item's thread.")
        block: dict[str, Any] = {"type": "input", "block_id": f"fix_{r.letter}", "optional": True,
                                 "label": plain(label), "element": element}
        if hint:
            block["hint"] = plain(hint)
        blocks.append(block)
    meta = metadata(p=view.post_id, c=channel, t=message_ts, h=hashes)
    return _modal(f"lbl:fix:{view.post_id}", "Suggest a correction", blocks, meta)


def rank_modal(view: PostView, channel: str | None, message_ts: str | None) -> dict[str, Any]:
    """One select per rank, best first."""
    options = [{"text": plain(f"Response {r.letter}"), "value": r.letter} for r in view.responses]
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [mrkdwn(
        "Put every response in exactly one place, best first.")]}]
    for i in range(view.n):
        label = ORDINALS[i] if i < len(ORDINALS) else f"{i + 1}th"
        blocks.append({"type": "input", "block_id": f"rank_{i + 1}", "label": plain(f"{label} place"),
                       "element": {"type": "static_select", "action_id": "choice",
                                   "placeholder": plain("Pick a response"), "options": options}})
    meta = metadata(p=view.post_id, c=channel, t=message_ts, n=view.n)
    return _modal(f"lbl:rank:{view.post_id}", "Rank the responses", blocks, meta)


def score_modal(view: PostView, channel: str | None, message_ts: str | None) -> dict[str, Any]:
    """One 1–5 select per campaign criterion."""
    labels = {1: "1 — poor", 2: "2", 3: "3 — acceptable", 4: "4", 5: "5 — excellent"}
    options = [{"text": plain(labels[i]), "value": str(i)} for i in range(1, 6)]
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [mrkdwn(
        "Score the item on each criterion (1 = poor, 5 = excellent). Vote first, then add scores.")]}]
    for i, name in enumerate(view.criteria):
        blocks.append({"type": "input", "block_id": f"crit_{i}", "optional": True, "label": plain(name),
                       "element": {"type": "static_select", "action_id": "score",
                                   "placeholder": plain("Score"), "options": options}})
    meta = metadata(p=view.post_id, c=channel, t=message_ts, k=list(view.criteria))
    return _modal(f"lbl:score:{view.post_id}", "Rate criteria", blocks, meta)


# ----------------------------------------------------------------------------------------- validation


def check_blocks(blocks: Sequence[dict[str, Any]], surface: str = "message") -> list[str]:
    """Problems that would make Slack reject (or silently mangle) these blocks; empty when valid."""
    problems: list[str] = []
    limit = MESSAGE_BLOCKS_MAX if surface == "message" else MODAL_BLOCKS_MAX
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks > {limit}")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    total_text = 0
    for n, block in enumerate(blocks):
        kind = block.get("type")
        where = f"block {n} ({kind})"
        bid = block.get("block_id")
        if bid is not None:
            if len(bid) > BLOCK_ID_MAX:
                problems.append(f"{where}: block_id too long")
            if bid in block_ids:
                problems.append(f"{where}: duplicate block_id {bid}")
            block_ids.add(bid)
        if kind == "section":
            text = (block.get("text") or {}).get("text", "")
            total_text += len(text)
            if not text:
                problems.append(f"{where}: empty section text")
            if len(text) > SECTION_MAX:
                problems.append(f"{where}: section text {len(text)} > {SECTION_MAX}")
        elif kind == "header":
            text = block["text"]["text"]
            if len(text) > HEADER_MAX or block["text"]["type"] != "plain_text":
                problems.append(f"{where}: bad header")
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= CONTEXT_ELEMENTS_MAX:
                problems.append(f"{where}: {len(elements)} context elements")
            for el in elements:
                total_text += len(el.get("text", ""))
                if len(el.get("text", "")) > SECTION_MAX:
                    problems.append(f"{where}: context text too long")
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= ACTIONS_MAX:
                problems.append(f"{where}: {len(elements)} elements (max {ACTIONS_MAX})")
            for el in elements:
                problems += _check_element(el, where, action_ids)
        elif kind == "image":
            if not is_url(block.get("image_url")) or len(block["image_url"]) > IMAGE_URL_MAX:
                problems.append(f"{where}: bad image_url")
            if not block.get("alt_text") or len(block["alt_text"]) > ALT_TEXT_MAX:
                problems.append(f"{where}: bad alt_text")
        elif kind == "input":
            if surface == "message":
                problems.append(f"{where}: input blocks belong in modals")
            label = block.get("label", {}).get("text", "")
            if not label or len(label) > 2000:
                problems.append(f"{where}: bad label")
            if len(block.get("hint", {}).get("text", "")) > 2000:
                problems.append(f"{where}: hint too long")
            problems += _check_element(block.get("element", {}), where, set())
        elif kind not in ("divider", "file", "rich_text"):
            problems.append(f"{where}: unknown block type")
    if surface == "message" and total_text > MESSAGE_TEXT_BUDGET + 2000:
        problems.append(f"{total_text} characters of block text (Slack rejects ~13,200)")
    return problems


def _check_element(el: dict[str, Any], where: str, action_ids: set[str]) -> list[str]:
    problems = []
    aid = el.get("action_id", "")
    if not aid or len(aid) > ACTION_ID_MAX:
        problems.append(f"{where}: bad action_id {aid!r}")
    if aid in action_ids:
        problems.append(f"{where}: duplicate action_id {aid}")
    action_ids.add(aid)
    kind = el.get("type")
    if kind == "button":
        if len(el.get("text", {}).get("text", "")) > BUTTON_TEXT_MAX:
            problems.append(f"{where}: button text too long")
        if len(el.get("value", "")) > BUTTON_VALUE_MAX:
            problems.append(f"{where}: button value too long")
    elif kind == "static_select":
        options = el.get("options", [])
        if not 1 <= len(options) <= OPTIONS_MAX:
            problems.append(f"{where}: {len(options)} options")
        if any(len(o["text"]["text"]) > OPTION_TEXT_MAX for o in options):
            problems.append(f"{where}: option text too long")
    elif kind == "plain_text_input":
        max_length = el.get("max_length", INPUT_MAX)
        if max_length > INPUT_MAX or len(el.get("initial_value", "")) > max_length:
            problems.append(f"{where}: text input initial value / max_length over {INPUT_MAX}")
    else:
        problems.append(f"{where}: unexpected element {kind}")
    return problems


def check_view(view: dict[str, Any]) -> list[str]:
    """Problems with a modal view payload."""
    problems = check_blocks(view.get("blocks", []), surface="modal")
    for key in ("title", "submit", "close"):
        if key in view and len(view[key]["text"]) > MODAL_TITLE_MAX:
            problems.append(f"modal {key} longer than {MODAL_TITLE_MAX}")
    if len(view.get("private_metadata", "")) > PRIVATE_METADATA_MAX:
        problems.append("private_metadata too long")
    if len(view.get("callback_id", "")) > 255:
        problems.append("callback_id too long")
    return problems


def letters(n: int) -> list[str]:
    return list(LETTERS[:n])
