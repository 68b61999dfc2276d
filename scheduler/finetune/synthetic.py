"""Small generated preference and correction sets, for tests, benchmarks and offline demos.

The chosen answer is on topic and helpful, the rejected one dismissive, evasive or about something
else; wording varies so a model must learn the pattern rather than memorise strings.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

TASKS = [
    "bake sourdough bread", "change a flat tyre", "learn basic Spanish", "repot a houseplant", "write a cover letter",
    "set up a Python virtual environment", "clean a cast iron pan", "train for a 5k run", "brew pour-over coffee",
    "back up a laptop", "plan a weekly budget", "fix a squeaky door", "start a vegetable garden",
    "prepare for a job interview", "improve sleep habits", "paint a bedroom wall", "sharpen a kitchen knife",
    "organise a small closet", "make a simple tomato sauce", "teach a dog to sit", "reduce screen time",
    "write unit tests", "negotiate a salary", "care for a cat", "ride a bike safely in traffic",
    "read a nutrition label", "take better phone photos", "install a bookshelf", "memorise a speech",
    "compost kitchen scraps", "choose running shoes", "patch a hole in drywall", "wash a wool sweater",
    "meditate for beginners", "study for an exam", "pack for a week-long trip", "descale a kettle",
    "write a haiku", "stretch after exercise", "keep a journal",
]
OPENERS = ["Sure! To {t}, start by", "Good question. If you want to {t}, first",
           "Here is a simple way to {t}: begin by", "Happy to help. To {t}, you should first", "To {t} well, begin by"]
STEPS = ["gathering what you need", "reading a short guide", "setting aside some quiet time", "making a simple plan",
         "checking the instructions carefully", "starting with a small first step", "asking someone experienced"]
CLOSERS = ["then practise a little every day and adjust as you go.", "then follow the steps one by one and take notes.",
           "then review what worked and repeat it next time.", "and finally check the result and fix small issues."]
BAD = ["I don't know. Figure it out yourself.", "Why would you even want to {t}? Not my problem.",
       "No idea, search the internet.", "That's a boring question, ask someone else.",
       "Whatever. Just do it somehow.", "Honestly, {t} is pointless, don't bother.",
       "lol no", "I refuse to answer that."]
QUESTIONS = ["How do I {t}?", "What is the best way to {t}?", "Can you explain how to {t}?", "Any tips to {t}?"]


def preference_rows(n: int, *, seed: int = 0, tasks: list[str] | None = None) -> list[dict[str, Any]]:
    """`n` rows in the `trl` export shape (prompt, chosen, rejected)."""
    rng = random.Random(seed)
    pool = tasks or TASKS
    rows = []
    for i in range(n):
        t = pool[i % len(pool)]
        good = f"{rng.choice(OPENERS).format(t=t)} {rng.choice(STEPS)}, {rng.choice(CLOSERS)}"
        if rng.random() < 0.25:
            other = rng.choice([x for x in TASKS if x != t])
            bad = f"{rng.choice(OPENERS).format(t=other)} {rng.choice(STEPS)}. Not sure about your question though."
        else:
            bad = rng.choice(BAD).format(t=t)
        rows.append({"prompt": rng.choice(QUESTIONS).format(t=t), "chosen": good, "rejected": bad,
                     "item_id": f"syn-{seed}-{i}"})
    return rows


def completion_rows(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """`n` rows in the `sft` export shape (prompt, completion), with the replaced answer as `original`."""
    return [{"prompt": r["prompt"], "completion": r["chosen"], "original": r["rejected"], "item_id": r["item_id"]}
            for r in preference_rows(n, seed=seed)]


def write_export(folder: Path, train: list[dict[str, Any]], test: list[dict[str, Any]], *, fmt: str = "trl",
                 campaign: str = "synthetic", version: int = 1) -> Path:
    """Write rows in the exporter's folder layout (train/test JSONL + manifest.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    manifest = {"campaign": campaign, "format": fmt, "version": version,
                "counts": {"rows": len(train) + len(test), "train": len(train), "test": len(test)}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def split_tasks(test_share: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint task lists so held-out pairs are about topics never seen in training."""
    rng = random.Random(seed)
    tasks = TASKS[:]
    rng.shuffle(tasks)
    cut = int(len(tasks) * test_share)
    return tasks[cut:], tasks[:cut]
