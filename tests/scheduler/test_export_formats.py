"""Every export format: loads with `datasets`, has the columns TRL's trainers expect, right content."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from bot.core import aggregate
from bot.core.errors import InvalidInput
from scheduler.export import FORMATS, ItemRecord, consensus_pairs, export_campaign, hh_transcript, sweep_stale_temp
from tests.scheduler.conftest import ROOT, add_campaign, cli_cmd, cli_env, vote_item

# columns each trainer reads (TRL 1.x): DPO / reward: prompt?, chosen, rejected (+ margin); KTO: prompt,
# completion, label; SFT prompt-completion: prompt, completion.
EXPECTED = {
    "trl": {"prompt", "chosen", "rejected"},
    "trl-conversational": {"prompt", "chosen", "rejected"},
    "reward": {"prompt", "chosen", "rejected", "margin"},
    "kto": {"prompt", "completion", "label"},
    "sft": {"prompt", "completion"},
    "correction-pairs": {"prompt", "chosen", "rejected"},
    "hh": {"chosen", "rejected"},
    "openai-preference": {"input", "preferred_output", "non_preferred_output"},
    "votes": {"item_id", "vote_id", "annotator_id", "outcome", "ranking", "guideline_version"},
}


def load(path: Path, kind: str, cache: Path):  # type: ignore[no-untyped-def]
    from datasets import load_dataset

    files = {"train": str(path / f"train.{kind}")}
    return load_dataset("json" if kind == "jsonl" else "parquet", data_files=files, cache_dir=str(cache))


def all_rows(path: Path) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        rows += [json.loads(line) for line in (path / f"{split}.jsonl").read_text().splitlines()]
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_loads_with_datasets(fmt, service, labelled, db, tmp_path):
    res = export_campaign(db, labelled, fmt, tmp_path / fmt, test_fraction=0.0)
    ds_json, ds_parquet = load(res.path, "jsonl", tmp_path / "c1"), load(res.path, "parquet", tmp_path / "c2")
    assert ds_json["train"].num_rows == ds_parquet["train"].num_rows == res.rows > 0
    assert EXPECTED[fmt] <= set(ds_parquet["train"].column_names)
    assert EXPECTED[fmt] <= set(ds_json["train"].column_names)
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["format"] == fmt and manifest["counts"]["rows"] == res.rows
    assert manifest["mode"] == "cumulative" and manifest["vote_range"]["max_vote_id"] == 12
    assert manifest["guideline_version"] == 1 and manifest["columns"] == ds_parquet["train"].column_names
    for name, meta in manifest["files"].items():
        import hashlib

        assert hashlib.sha256((res.path / name).read_bytes()).hexdigest() == meta["sha256"]


def test_pair_formats_content(service, labelled, db, tmp_path):
    trl = all_rows(export_campaign(db, labelled, "trl", tmp_path / "trl").path)
    assert sorted((r["item_id"], r["chosen"], r["rejected"]) for r in trl) == [
        ("demo-0", "Answer 0 to question 0.", "Answer 1 to question 0."),
        ("demo-1", "Answer 1 to question 1.", "Answer 0 to question 1."),
    ]  # ties and both-bad give no pair
    reward = {r["item_id"]: r for r in all_rows(export_campaign(db, labelled, "reward", tmp_path / "rw").path)}
    assert reward["demo-0"]["margin"] == 1.0 and reward["demo-1"]["margin"] == pytest.approx(1 / 3, abs=1e-4)
    conv = all_rows(export_campaign(db, labelled, "trl-conversational", tmp_path / "c").path)
    assert conv[0]["prompt"][0]["role"] == "user" and conv[0]["chosen"][0]["role"] == "assistant"
    hh = {r["item_id"]: r for r in all_rows(export_campaign(db, labelled, "hh", tmp_path / "hh").path)}
    assert hh["demo-0"]["chosen"] == "\n\nHuman: Question 0: explain topic 0.\n\nAssistant: Answer 0 to question 0."
    oa = all_rows(export_campaign(db, labelled, "openai-preference", tmp_path / "oa").path)
    assert set(oa[0]) == {"input", "preferred_output", "non_preferred_output"}  # strict: OpenAI rejects extras
    assert oa[0]["input"]["messages"][0]["role"] == "user"


def test_kto_labels(service, labelled, db, tmp_path):
    kto = all_rows(export_campaign(db, labelled, "kto", tmp_path / "kto").path)
    got = sorted((r["item_id"], r["completion"], r["label"]) for r in kto)
    assert got == [
        ("demo-0", "Answer 0 to question 0.", True), ("demo-0", "Answer 1 to question 0.", False),
        ("demo-1", "Answer 0 to question 1.", False), ("demo-1", "Answer 1 to question 1.", True),
        ("demo-3", "Answer 0 to question 3.", False), ("demo-3", "Answer 1 to question 3.", False),
    ]


def test_correction_formats(service, labelled, db, tmp_path):
    sft = all_rows(export_campaign(db, labelled, "sft", tmp_path / "sft").path)
    assert [(r["item_id"], r["completion"], r["position"]) for r in sft] == [
        ("demo-0", "A much better second answer.", 1)]
    pairs = all_rows(export_campaign(db, labelled, "correction-pairs", tmp_path / "cp").path)
    assert pairs[0]["chosen"] == "A much better second answer." and pairs[0]["rejected"] == "Answer 1 to question 0."


def test_incremental_versions_hold_only_what_is_new(service, labelled, db, tmp_path):
    first = export_campaign(db, labelled, "votes", tmp_path / "v", incremental=True)
    assert first.rows == 12 and first.manifest["base_version"] is None
    again = export_campaign(db, labelled, "votes", tmp_path / "v", incremental=True)
    assert not again.created and again.version == first.version  # nothing new: no empty version
    vote_item(service, labelled, [1, 1, 1], start_user=10)
    second = export_campaign(db, labelled, "votes", tmp_path / "v", incremental=True)
    assert second.version == 2 and second.rows == 3 and second.manifest["base_version"] == 1
    assert second.manifest["vote_range"] == {"after_vote_id": 12, "max_vote_id": 15}
    assert {r["vote_id"] for r in all_rows(second.path)} == {13, 14, 15}
    trl_inc = export_campaign(db, labelled, "trl", tmp_path / "t", incremental=True)
    assert trl_inc.rows == 3
    vote_item(service, labelled, [0, 0, 0], start_user=20)
    trl_next = export_campaign(db, labelled, "trl", tmp_path / "t", incremental=True)
    assert [r["item_id"] for r in all_rows(trl_next.path)] == ["demo-5"]
    cumulative = export_campaign(db, labelled, "trl", tmp_path / "t")
    assert cumulative.rows == 4 and cumulative.manifest["mode"] == "cumulative"


def test_failed_export_leaves_previous_version(service, labelled, db, tmp_path):
    out = tmp_path / "trl"
    v1 = export_campaign(db, labelled, "trl", out)
    before = {p.name: p.read_bytes() for p in v1.path.iterdir()}

    def crash(_tmp: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        export_campaign(db, labelled, "trl", out, _before_rename=crash)
    assert sorted(p.name for p in out.iterdir()) == ["latest", "v0001"]
    assert {p.name: p.read_bytes() for p in v1.path.iterdir()} == before
    assert os.readlink(out / "latest") == "v0001"


def test_stale_temp_of_dead_process_is_swept(tmp_path):
    proc = subprocess.run(["true"], check=True)
    assert proc.returncode == 0
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    stale = tmp_path / f".tmp-{dead.pid}-abcd"
    live = tmp_path / f".tmp-{os.getpid()}-abcd"
    stale.mkdir()
    live.mkdir()
    assert sweep_stale_temp(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_bad_format_and_fraction_change_nothing(service, labelled, db, tmp_path):
    with pytest.raises(InvalidInput):
        export_campaign(db, labelled, "csv", tmp_path / "x")
    with pytest.raises(InvalidInput):
        export_campaign(db, labelled, "trl", tmp_path / "x", test_fraction=1.5)
    assert not (tmp_path / "x").exists()


def test_fast_consensus_path_matches_aggregate():
    rng = random.Random(1)
    for _ in range(2000):
        votes = []
        for vid in range(rng.randint(1, 6)):
            o = rng.choice(["win", "win", "tie", "both_bad"])
            w = rng.randint(0, 1) if o == "win" else None
            votes.append((1, o, w, json.dumps([w, 1 - w]) if w is not None else None, vid))
        rec = ItemRecord(1, "x", "p", 2, "complete", None, ["a", "b"], ["ta", "tb"], votes)
        lites = [aggregate.VoteLite(v[1], (v[2], 1 - v[2]) if v[2] is not None else None) for v in votes]
        ref = aggregate.item_consensus(lites, 2)
        assert [(p.chosen, p.rejected, p.support) for p in consensus_pairs(rec)] == \
            [(p.chosen, p.rejected, p.support) for p in ref.pairs]


def test_three_response_items_give_ranked_pairs(service, db, tmp_path):
    camp = add_campaign(service, "multi", n=1, responses=3)
    from bot.core.events import RankingSubmitted
    from tests.conftest import actor

    view = service.prepare_posts(camp, "slack", "C123", 1)[0]
    from storage.models import Post

    with db.read() as s:
        perm = s.get(Post, view.post_id).permutation
    order = "".join("ABC"[perm.index(p)] for p in (2, 0, 1))
    for u in range(3):
        service.submit_ranking(RankingSubmitted(actor(f"R{u}"), view.post_id, order))
    rows = all_rows(export_campaign(db, camp, "reward", tmp_path / "r").path)
    assert sorted((r["chosen_model"], r["rejected_model"], r["margin"]) for r in rows) == [
        ("model-0", "model-1", 1.0), ("model-2", "model-0", 1.0), ("model-2", "model-1", 1.0)]
    kto = all_rows(export_campaign(db, camp, "kto", tmp_path / "k").path)
    assert sorted((r["model"], r["label"]) for r in kto) == [("model-1", False), ("model-2", True)]


def test_cli_export_incremental(service, labelled, db, db_url, tmp_path):
    env = cli_env(db_url)
    out = tmp_path / "cli"
    args = cli_cmd("export", "--campaign", labelled, "--format", "kto", "--out", str(out), "--incremental")
    first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "incremental" in first.stdout
    second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "Nothing new" in second.stdout
    bad = subprocess.run(cli_cmd("export", "--campaign", labelled, "--format", "nope", "--out", str(out)), cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "Unknown export format" in bad.stderr


def test_hh_transcript_roles():
    text = hh_transcript([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye?"}], "Bye!")
    assert text == "\n\nSystem: Be brief.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye?\n\nAssistant: Bye!"
