"""Rendering within Discord's limits (never cutting silently) and the custom-id / input translation."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from bot.adapters.discord import components, render, translate
from bot.core.errors import InvalidInput
from bot.core.replies import PostView, ShownResponse
from storage.models import Post
from tests.discord.harness import ADMIN


def view(texts: list[str], prompt: str = "Which is better?", revealed: bool = False, post_id: int = 42) -> PostView:
    shown = [ShownResponse(chr(65 + i), t, f"model-{i}" if revealed else None) for i, t in enumerate(texts)]
    return PostView(post_id=post_id, item_id=1, campaign="demo", external_id="ext-1", prompt=prompt, responses=shown,
                    criteria=["helpfulness"], vote_count=0, quorum=3, revealed=revealed)


def components_of(ui) -> list[dict]:
    return ui.to_components()


@pytest.mark.parametrize("sizes", [[10, 10], [10000, 50], [3000] * 8, [4000, 4000, 4000], [0, 5]])
@pytest.mark.parametrize("prompt_len", [20, 9000])
def test_posts_stay_within_limits_and_attach_what_does_not_fit(sizes, prompt_len):
    texts = [("word " * (n // 5 + 1))[:n] for n in sizes]
    prompt = ("p " * prompt_len)[:prompt_len]
    out = render.render_post(view(texts, prompt))
    ui = components.post_buttons(view(texts, prompt))
    render.validate(out.content, out.embeds, components_of(ui))  # raises when over a limit
    assert sum(render.embed_chars(e) for e in out.embeds) <= render.EMBED_TOTAL_MAX
    full = [prompt, *texts]
    names = ["prompt.txt"] + [f"response-{chr(65 + i)}.txt" for i in range(len(texts))]
    for text, name, emb in zip(full, names, out.embeds, strict=True):
        if name in out.attached_texts:
            assert f"continues in the attached `{name}`" in emb.description  # the voter is told
            [f] = [f for f in out.files if f.filename == name]
            assert f.fp.read().decode() == text  # the whole text travels as a file
        else:
            assert text in emb.description or (not text and "(empty)" in emb.description)


def test_buttons_use_the_shared_custom_id_pattern():
    ui = components.post_buttons(view(["a"] * 8))
    rows = components_of(ui)
    assert len(rows) <= 5 and all(len(r["components"]) <= 5 for r in rows)
    ids = [c["custom_id"] for r in rows for c in r["components"]]
    assert all(translate.parse_custom_id(i) is not None for i in ids)
    assert "lbl:vote:42:H" in ids and "lbl:rank:42" in ids and "lbl:score:42" in ids
    two = [c["label"] for r in components_of(components.post_buttons(view(["a", "b"]))) for c in r["components"]]
    assert two == ["A better", "B better", "Tie", "Both bad", "Skip", "Suggest correction", "Flag", "Guidelines",
                   "Scores…"]


def test_custom_ids_round_trip_and_reject_garbage():
    assert translate.parse_custom_id("lbl:vote:123:both_bad") == translate.Action("vote", 123, "both_bad")
    assert translate.parse_custom_id("lbl:fix:9:B") == translate.Action("fix", 9, "B")
    for bad in ("lbl:vote:abc:A", "lbl:vote:1:AB", "lbl:drop:1", "xlbl:vote:1:A", "lbl:vote:1:A:x", "", None):
        assert translate.parse_custom_id(bad) is None
    with pytest.raises(ValueError):
        translate.custom_id("vote", 1, "nope")


def test_text_replies_split_or_attach():
    assert render.text_message("*bold* and `code`").content == "**bold** and `code`"
    mid = render.text_message("line\n" * 1000)
    assert mid.content is None and len(mid.embeds) == 2 and not mid.files
    assert "".join(e.description for e in mid.embeds).count("line") == 1000
    big = render.text_message("x " * 20000, filename="guidelines.md")
    assert big.files and big.files[0].filename == "guidelines.md" and "continues" in big.embeds[0].description


def test_modal_and_order_translation():
    assert translate.parse_order("c > a > b", 3) == ["C", "A", "B"]
    with pytest.raises(InvalidInput):
        translate.parse_order("A A B", 3)
    values = translate.modal_values([{"type": 1, "components": [{"type": 4, "custom_id": "order", "value": "BA"}]},
                                     {"type": 18, "component": {"type": 4, "custom_id": "reason", "value": "why"}}])
    assert values == {"order": "BA", "reason": "why"}
    assert translate.split_shard_ids("0-2,5", 8) == [0, 1, 2, 5]
    with pytest.raises(InvalidInput):
        translate.split_shard_ids("9", 4)


async def test_long_response_is_posted_with_attachment(fake, db_url, service):
    from bot.core.importer import validate_row
    from bot.core.service import CampaignSpec
    from tests.conftest import CLI
    from tests.discord.harness import start_bot

    long = "This answer is long. " * 600  # 12,600 characters
    service.create_campaign(CampaignSpec("long", channels=(("discord", str(fake.channel_id)),), gold_rate=0.0), CLI)
    row = {"id": "l-1", "prompt": "Explain.", "responses": [{"model": "m1", "text": long},
                                                              {"model": "m2", "text": "Short."}]}
    service.import_items("long", [validate_row(row, 1)[0]], CLI)
    running = await start_bot(fake, db_url)
    try:
        inter = await fake.slash(["post"], {"n": 1}, ADMIN)
        await fake.wait_for(lambda: len(inter.followups) >= 2)
        [msg] = fake.channel_messages()
        with service.db.read() as s:
            post = s.exec(select(Post)).one()
        letter = "A" if post.permutation[0] == 0 else "B"
        [att] = msg["_files"]
        assert att["filename"] == f"response-{letter}.txt" and att["content"].decode() == long
        assert sum(render.embed_chars(e) for e in msg["embeds"]) <= 6000
        click = await fake.click(int(msg["id"]), f"lbl:vote:{post.id}:A", 300000000000000001)
        await fake.wait_for(lambda: click.original_edits)
        await asyncio.sleep(0.05)
        assert "attachments" not in click.original_edits[-1], "an edit keeps the original attachments"
    finally:
        await running.stop()


async def test_sharded_client_handles_interactions(fake, db_url, campaign):
    from tests.discord.harness import start_bot

    running = await start_bot(fake, db_url, discord_shard_count=2)
    try:
        assert sorted(s.shard_id for s in fake.shards) == [0, 1]
        assert running.client.shard_count == 2
        inter = await fake.slash(["stats"], {}, 300000000000000001)
        await fake.wait_for(lambda: inter.followups, timeout=10)
        assert "items complete" in inter.followups[0]["content"]
    finally:
        await running.stop()
