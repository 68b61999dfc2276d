"""Block Kit rendering within Slack's limits, and payload translation (pure functions, no I/O)."""

from __future__ import annotations

import json

import pytest

from bot.adapters.slack import render, translate
from bot.core.events import VoteCast
from bot.core.replies import ItemResult, PostView, ShownResponse
from tests.slack.payloads import block_actions, message_event, view_submission


def view(texts: list[str], *, prompt: str = "Which is right?", revealed: bool = False, criteria=(),
         images: dict[int, str] | None = None, audio: dict[int, str] | None = None) -> PostView:
    images, audio = images or {}, audio or {}
    responses = [ShownResponse(render.LETTERS[i], t, f"model-{i}" if revealed else None, images.get(i), audio.get(i))
                 for i, t in enumerate(texts)]
    result = ItemResult({"A": 2, "tie": 1}, "A", 0.67) if revealed else None
    return PostView(post_id=42, item_id=7, campaign="demo", external_id="ext-1", prompt=prompt,
                    responses=responses, criteria=list(criteria), vote_count=3 if revealed else 1, quorum=3,
                    revealed=revealed, result=result)


def plain_sections(blocks) -> str:
    return "".join(b["text"]["text"] for b in blocks if b["type"] == "section" and b["text"]["type"] == "plain_text")


@pytest.mark.parametrize("size", [1, 7, 100, 2900])
def test_split_text_loses_nothing(size):
    text = ("word " * 50 + "\n\n" + "x" * 300 + "\nline\n") * 20
    parts = render.split_text(text, size)
    assert "".join(parts) == text and all(0 < len(p) <= size for p in parts)


def test_two_response_message_is_valid_and_blind():
    rendered = render.item_message(view(["Answer one.", "Answer two."], criteria=("helpfulness",)))
    assert not render.check_blocks(rendered.blocks)
    assert "model-" not in json.dumps(rendered.blocks) and "1/3 votes" in json.dumps(rendered.blocks)
    assert not rendered.thread and not rendered.media


def test_revealed_message_shows_result_and_models():
    blocks = render.item_message(view(["a", "b"], revealed=True)).blocks
    text = json.dumps(blocks)
    assert "Result: *A better*" in text and "model-0" in text and "model-1" in text and "67%" in text


@pytest.mark.parametrize("n,size", [(2, 50_000), (8, 20_000), (8, 200), (3, 9_000)])
def test_long_content_stays_within_limits_and_is_never_cut(n, size):
    texts = [f"{i}:" + ("lorem ipsum " * (size // 12 + 1))[:size] for i in range(n)]
    prompt = "P " * 20_000
    rendered = render.item_message(view(texts, prompt=prompt), budget=render.MESSAGE_TEXT_BUDGET)
    assert not render.check_blocks(rendered.blocks)
    for _, blocks in rendered.thread:
        assert not render.check_blocks(blocks)
    main = json.dumps(rendered.blocks)
    thread_text = "".join(plain_sections(b) for _, b in rendered.thread)
    for name, text in [("Prompt", prompt)] + [(f"Response {render.LETTERS[i]}", t) for i, t in enumerate(texts)]:
        if text in plain_sections(rendered.blocks):
            continue
        assert f"{name} continues in this message's thread" in main
        assert text in thread_text, f"{name} must be posted in full in the thread"


def test_images_and_audio():
    v = view(["a", "b"], images={0: "https://example.com/a.png", 1: "/data/b.png"},
             audio={0: "https://example.com/a.mp3", 1: "/data/b.wav"})
    rendered = render.item_message(v)
    assert any(b["type"] == "image" and b["image_url"] == "https://example.com/a.png" for b in rendered.blocks)
    assert "<https://example.com/a.mp3|Listen to response A>" in str(rendered.blocks)
    assert [(m.letter, m.kind, m.path) for m in rendered.media] == [("B", "image", "/data/b.png"),
                                                                    ("B", "audio", "/data/b.wav")]
    assert not render.check_blocks(rendered.blocks)


def test_more_than_two_responses_get_rank_and_best_buttons():
    ids = [el["action_id"] for b in render.item_message(view(["a", "b", "c"])).blocks if b["type"] == "actions"
           for el in b["elements"]]
    assert ids[:4] == ["lbl:vote:42:A", "lbl:vote:42:B", "lbl:vote:42:C", "lbl:rank:42"]
    assert all(translate.ACTION_RE.match(i) and len(i) <= 100 for i in ids)


def test_modals_are_valid():
    v = view(["short", "y" * 5000, "z"], criteria=("helpfulness", "harmlessness"))
    fix = render.correction_modal(v, "C1", "1700000000.000100")
    assert not render.check_view(fix)
    inputs = {b["block_id"]: b for b in fix["blocks"] if b["type"] == "input"}
    assert inputs["fix_A"]["element"]["initial_value"] == "short"
    assert "initial_value" not in inputs["fix_B"]["element"]
    assert "too long to pre-fill" in inputs["fix_B"]["label"]["text"]
    assert not render.check_view(render.rank_modal(v, "C1", None))
    assert not render.check_view(render.score_modal(v, None, None))


def test_validator_catches_violations():
    ok = render.item_message(view(["a", "b"])).blocks
    assert render.check_blocks(ok + [{"type": "divider"}] * 50)
    assert render.check_blocks([{"type": "section", "text": render.plain("x" * 3001)}])
    dup = {"type": "actions", "elements": [render.button("A", "lbl:vote:1:A", 1)] * 2}
    assert any("duplicate action_id" in p for p in render.check_blocks([dup]))
    assert render.check_blocks([{"type": "actions", "elements": [render.button("x", f"a{i}", 1) for i in range(26)]}])
    assert render.check_view({"type": "modal", "title": render.plain("x" * 25), "blocks": []})


def test_translate_click_and_delivery_ids():
    body = block_actions("lbl:vote:42:tie", user="U1", message_ts="1700000000.000100", trigger_id="111.222.abc")
    click = translate.interaction_from(body)
    assert (click.action, click.post_id, click.arg, click.channel) == ("vote", 42, "tie", "C123")
    event = translate.core_event(click)
    assert isinstance(event, VoteCast) and event.choice == "tie" and event.actor.workspace == "T1"
    assert translate.interaction_from(body).delivery_id == click.delivery_id  # same delivery, same id
    other = translate.interaction_from(block_actions("lbl:vote:42:tie", user="U1", trigger_id="333.444.def"))
    assert other.delivery_id != click.delivery_id  # a second click is a new delivery
    for bad in ("lbl:vote:42", "lbl:vote:42:AB", "lbl:skip:42:A", "lbl:nope:42", "lbl:vote:x:A"):
        with pytest.raises(translate.BadPayload):
            translate.interaction_from(block_actions(bad))


def test_translate_submissions_and_comments():
    v = view(["a", "b", "c"])
    modal = render.rank_modal(v, "C1", "1700000000.000100")
    values = {f"rank_{i}": {"choice": {"selected_option": {"value": x}}} for i, x in enumerate("BCA", 1)}
    sub = translate.submission_from(view_submission(modal, values))
    ranking = translate.ranking_from(sub)
    assert ranking.order == ["B", "C", "A"] and sub.channel == "C1" and sub.message_ts == "1700000000.000100"
    evt = translate.comment_from(message_event("hi", thread_ts="1700000000.000100", ts="1700000001.000100",
                                               event_id="Ev1"))
    assert evt.thread_id == "1700000000.000100" and evt.delivery_id == "slack:evt:Ev1"
    bot = message_event("hi", thread_ts="1700000000.000100", ts="1700000001.000100")
    bot["event"]["bot_id"] = "B1"
    assert translate.comment_from(bot) is None


def test_manifest_points_everything_at_one_url_with_the_needed_scopes():
    yaml = pytest.importorskip("yaml")
    from pathlib import Path

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "slack-manifest.yaml").read_text())
    url = "https://YOUR-HOST/slack/events"
    settings = manifest["settings"]
    assert settings["event_subscriptions"]["request_url"] == url
    assert settings["interactivity"] == {"is_enabled": True, "request_url": url}
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/label" and command["url"] == url and command["should_escape"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "files:write", "channels:history"} <= scopes
    assert "message.channels" in settings["event_subscriptions"]["bot_events"]
