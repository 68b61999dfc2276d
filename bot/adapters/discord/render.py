"""Core replies -> Discord messages (embeds, attachments). Within Discord's limits, never cut silently.

A post is one header embed (prompt, progress, results once revealed) plus one embed per response.
Discord allows 4,096 characters per embed description and 6,000 over all embeds of a message, so
when the texts do not fit, each is shown up to a fair share of the budget with a visible note, and
the full text goes along as a `.txt` attachment. Images become embed images; audio becomes an
attachment (local files) or a link (URLs).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from bot.core.replies import PostView, VoteRecorded, choice_label

CONTENT_MAX = 2000
DESCRIPTION_MAX = 4096
EMBED_TOTAL_MAX = 6000
EMBEDS_MAX = 10
TITLE_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
SAFETY = 40  # headroom for Discord's own counting of markdown and newlines
COLORS = [0x5865F2, 0x57F287, 0xFEE75C, 0xEB459E, 0xED4245, 0x3BA55C, 0xFAA61A, 0x99AAB5]
HEADER_COLOR = 0x2F3136


@dataclass
class Rendered:
    """A message ready for discord.py: content, embeds and (only when posting) files."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[discord.File] = field(default_factory=list)
    attached_texts: list[str] = field(default_factory=list)  # filenames of full texts that did not fit

    def kwargs(self, *, with_files: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content, "embeds": self.embeds}
        if with_files and self.files:
            out["files"] = self.files
        return out


def mrkdwn_to_discord(text: str) -> str:
    """The shared dispatcher writes Slack's *bold*; Discord wants **bold**."""
    return re.sub(r"(?<![*\w])\*([^*\n]+?)\*(?![*\w])", r"**\1**", text)


def fair_shares(lengths: list[int], budget: int, cap: int) -> list[int]:
    """How many characters of each text to show: everything if it fits, else a water-filled fair share."""
    shares = [0] * len(lengths)
    remaining = list(range(len(lengths)))
    left = max(0, budget)
    while remaining:
        even = left // len(remaining)
        small = [i for i in remaining if min(lengths[i], cap) <= even]
        if not small:
            for i in remaining:
                shares[i] = min(even, cap)
            break
        for i in small:
            shares[i] = min(lengths[i], cap)
            left -= shares[i]
        remaining = [i for i in remaining if i not in small]
    return shares


def _cut_note(filename: str) -> str:
    return f"\n\n… **continues in the attached `{filename}`** (too long for one Discord message)"


def _excerpt(text: str, share: int, filename: str) -> tuple[str, bool]:
    if len(text) <= share:
        return text or "*(empty)*", False
    note = _cut_note(filename)
    keep = max(0, share - len(note))
    cut = text.rfind(" ", max(0, keep - 200), keep)
    return text[: cut if cut > 0 else keep].rstrip() + note, True


def _media(ref: str | None, stem: str) -> tuple[str | None, discord.File | None, str | None]:
    """(embed url, file to attach, problem) for an image or audio reference (URL or local path)."""
    if not ref:
        return None, None, None
    if re.match(r"^https?://", ref):
        return ref, None, None
    path = Path(ref).expanduser()
    if not path.is_file():
        return None, None, f"media file not found: {path.name}"
    name = f"{stem}{path.suffix.lower()}"
    return f"attachment://{name}", discord.File(path, filename=name), None


def render_post(view: PostView, *, with_files: bool = True, note: str | None = None) -> Rendered:
    """The embeds (and attachments) of a posted item; the same text on every edit, files only at posting."""
    out = Rendered()
    prompt = view.prompt_text
    header_title = f"{view.campaign} · item {view.external_id}"[:TITLE_MAX]
    if view.revealed and view.result is not None:
        status = f"{view.vote_count} votes · results revealed"
    else:
        status = f"{view.vote_count}/{view.quorum} votes · models and tallies hidden until quorum"
    footer = f"{status} · guidelines v{view.guideline_version} · post {view.post_id}"[:FOOTER_MAX]
    result_field = _result_field(view)
    titles = [f"Response {r.letter}" + (f" — {r.model}" if r.model else "") for r in view.responses]
    titles = [t[:TITLE_MAX] for t in titles]
    overhead = len(header_title) + len(footer) + sum(len(t) for t in titles) + SAFETY
    if result_field:
        overhead += len(result_field[0]) + len(result_field[1])
    if note:
        overhead += len(note) + 2
    texts = [prompt] + [r.text for r in view.responses]
    names = ["prompt.txt"] + [f"response-{r.letter}.txt" for r in view.responses]
    # audio links/notes also count against the total
    media = []
    for r in view.responses:
        img_url, img_file, img_problem = _media(r.image, f"image-{r.letter}")
        aud_url, aud_file, aud_problem = _media(r.audio, f"audio-{r.letter}")
        extra = []
        if aud_file is not None:
            extra.append(f"🔊 audio attached: `{aud_file.filename}`")
        elif aud_url:
            extra.append(f"🔊 audio: {aud_url}")
        extra += [p for p in (img_problem, aud_problem) if p]
        media.append((img_url, img_file, aud_file, "\n".join(extra)))
        overhead += sum(len(x) + 2 for x in extra)
    shares = fair_shares([len(t) for t in texts], EMBED_TOTAL_MAX - overhead, DESCRIPTION_MAX - 200)
    shown = []
    for text, share, name in zip(texts, shares, names, strict=True):
        body, cut = _excerpt(text, share, name)
        shown.append(body)
        if cut:
            out.attached_texts.append(name)
            if with_files:
                out.files.append(discord.File(io.BytesIO(text.encode("utf-8")), filename=name))
    header = discord.Embed(title=header_title, description=(f"{note}\n\n" if note else "") + shown[0],
                           color=HEADER_COLOR)
    if result_field:
        header.add_field(name=result_field[0], value=result_field[1], inline=False)
    header.set_footer(text=footer)
    out.embeds.append(header)
    for i in range(len(view.responses)):
        img_url, img_file, aud_file, extra = media[i]
        body = shown[i + 1] + (f"\n\n{extra}" if extra else "")
        emb = discord.Embed(title=titles[i], description=body, color=COLORS[i % len(COLORS)])
        if img_url:
            emb.set_image(url=img_url)
        if with_files:
            out.files += [f for f in (img_file, aud_file) if f is not None]
        out.embeds.append(emb)
    validate(out.content, out.embeds)
    return out


def _result_field(view: PostView) -> tuple[str, str] | None:
    if not view.revealed or view.result is None:
        return None
    res = view.result
    consensus = "split (no consensus)" if res.consensus is None else choice_label(res.consensus)
    tallies = " · ".join(f"{choice_label(k)}: {v}" for k, v in sorted(res.tallies.items())) or "no votes"
    value = f"Consensus: **{consensus}** (agreement {res.agreement:.0%})\n{tallies}"
    return "Result", value[:FIELD_VALUE_MAX]


def confirmation(res: VoteRecorded) -> str:
    """The private confirmation after a committed vote (same facts as on Slack)."""
    lines = [res.summary]
    if res.gold is not None:
        if res.gold.correct:
            lines.append("✅ This was a check item and your answer matches the reference.")
        else:
            lines.append(f"❌ This was a check item; the reference answer is **{choice_label(res.gold.expected)}**.")
            if res.gold.explanation:
                lines.append(res.gold.explanation)
            if res.gold.guideline_excerpt:
                lines.append(f"> {res.gold.guideline_excerpt[:600]}")
    if res.reached_quorum:
        lines.append("This item just reached its votes: models and results are now shown.")
    elif res.extra_vote_requested:
        lines.append("Votes on this item disagree, so one more vote was requested.")
    return "\n".join(lines)


def text_message(text: str, *, title: str | None = None, filename: str = "reply.md") -> Rendered:
    """A text reply: content up to 2,000 chars, else embeds up to 6,000, else an attachment with a note."""
    text = mrkdwn_to_discord(text or "")
    if title is None and len(text) <= CONTENT_MAX:
        return Rendered(content=text or "(empty)")
    budget = EMBED_TOTAL_MAX - len(title or "") - SAFETY
    if len(text) <= budget:
        chunks = split_text(text, DESCRIPTION_MAX)
        embeds = [discord.Embed(title=title if i == 0 else None, description=c) for i, c in enumerate(chunks)]
        out = Rendered(embeds=embeds)
    else:
        head, _ = _excerpt(text, DESCRIPTION_MAX - 100, filename)
        out = Rendered(embeds=[discord.Embed(title=title, description=head)],
                       files=[discord.File(io.BytesIO(text.encode("utf-8")), filename=filename)],
                       attached_texts=[filename])
    validate(out.content, out.embeds)
    return out


def split_text(text: str, size: int) -> list[str]:
    """Split at line (or word) boundaries into pieces of at most `size` characters; nothing is lost."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", 0, size)
        if cut <= size // 2:
            cut = text.rfind(" ", 0, size)
        if cut <= size // 2:
            cut = size
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n") if text[cut:cut + 1] == "\n" else text[cut:]
    pieces.append(text)
    return [p for p in pieces if p] or [""]


def embed_chars(embed: discord.Embed | dict[str, Any]) -> int:
    """Characters Discord counts toward the 6,000 total."""
    data = embed.to_dict() if isinstance(embed, discord.Embed) else embed
    total = len(data.get("title") or "") + len(data.get("description") or "")
    total += len((data.get("footer") or {}).get("text") or "") + len((data.get("author") or {}).get("name") or "")
    for f in data.get("fields") or []:
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def validate(content: str | None, embeds: list[Any], components: list[dict[str, Any]] | None = None) -> None:
    """Raise ValueError if a message would break a Discord limit (checked before anything is sent)."""
    problems = []
    if content is not None and len(content) > CONTENT_MAX:
        problems.append(f"content {len(content)} > {CONTENT_MAX}")
    if len(embeds) > EMBEDS_MAX:
        problems.append(f"{len(embeds)} embeds > {EMBEDS_MAX}")
    total = 0
    for e in embeds:
        data = e.to_dict() if isinstance(e, discord.Embed) else e
        if len(data.get("description") or "") > DESCRIPTION_MAX:
            problems.append("embed description over 4,096")
        if len(data.get("title") or "") > TITLE_MAX:
            problems.append("embed title over 256")
        total += embed_chars(data)
    if total > EMBED_TOTAL_MAX:
        problems.append(f"embeds total {total} > {EMBED_TOTAL_MAX}")
    rows = components or []
    if len(rows) > 5:
        problems.append(f"{len(rows)} action rows > 5")
    for row in rows:
        kids = row.get("components") or []
        if len(kids) > 5:
            problems.append("more than 5 buttons in a row")
        for k in kids:
            cid = k.get("custom_id")
            if cid is not None and not 1 <= len(cid) <= 100:
                problems.append(f"custom_id length {len(cid)}")
            if len(k.get("label") or "") > 80:
                problems.append("button label over 80")
    if problems:
        raise ValueError("Discord message over limits: " + "; ".join(problems))
