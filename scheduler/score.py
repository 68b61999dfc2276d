"""Score open items with the latest reward model, for the `uncertainty` sampling strategy.

After a reward model trains, every open two-response item gets the model's margin
r(prompt, response 0) - r(prompt, response 1) in the `itemscore` table; the strategy then hands out
the items whose winner is least certain given that margin and the votes so far.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.core.errors import NotFound
from bot.core.replies import prompt_as_text
from storage import queries as q
from storage.db import Database
from storage.models import Item, ItemScore, Response, utcnow

BATCH = 256


def score_open_items(db: Database, campaign: str, model_dir: Path, *, model_version: str,
                     max_length: int = 256) -> int:
    """Write the reward model's margin for every open two-response item; returns how many were scored."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scheduler.finetune.common import Pair
    from scheduler.finetune.train_reward import score_pairs

    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        items = list(s.exec(select(Item).where(Item.campaign_id == camp.id, Item.status == "open",
                                               Item.n_responses == 2).order_by(Item.id)))
        texts: dict[int, list[str]] = {}
        for item_id, text in s.exec(select(Response.item_id, Response.text)
                                    .join(Item, Item.id == Response.item_id)
                                    .where(Item.campaign_id == camp.id, Item.status == "open", Item.n_responses == 2)
                                    .order_by(Response.item_id, Response.position)):
            texts.setdefault(item_id, []).append(text)
    if not items:
        return 0
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    scored = 0
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        pairs = [Pair(prompt_as_text(i.prompt), texts[i.id][0], texts[i.id][1]) for i in batch]
        rewards = score_pairs(model, tokenizer, pairs, max_length=max_length)
        with db.write() as s:
            for item, (r0, r1) in zip(batch, rewards, strict=True):
                q.insert_ignore(s, ItemScore, {"item_id": item.id, "model_version": model_version,
                                               "margin": float(r0 - r1), "created_at": utcnow()},
                                ("item_id", "model_version"))
        scored += len(batch)
    return scored
