"""Trainer entry points on real models: MiniLM reward model, DPO and SFT on a tiny Llama built from a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.finetune import train_dpo, train_reward, train_sft
from scheduler.finetune.common import (
    DataError,
    default_reward_base,
    load_completions,
    load_pairs,
    to_completion,
    to_pair,
)
from scheduler.finetune.synthetic import write_export


@pytest.mark.slow
def test_reward_model_on_minilm_reaches_090_heldout_accuracy(pref_export: Path, tmp_path: Path):
    out = tmp_path / "rm"
    assert train_reward.main(["--data", str(pref_export), "--out", str(out), "--epochs", "2", "--threads", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_pairs"] == 32 and metrics["train_pairs"] == 96
    assert metrics["eval_accuracy"] >= 0.9, metrics
    assert metrics["eval_mean_margin"] > 0
    assert metrics["final_loss"] < metrics["first_loss"]
    assert metrics["trainable_params"] == metrics["total_params"] > 20_000_000
    # The saved folder is a plain transformers model that ranks a fresh pair the same way.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scheduler.finetune.common import Pair

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    pair = Pair("How do I tune a guitar?", "Sure! To tune a guitar, start by reading a short guide, then practise.",
                "No idea, search the internet.")
    (good, bad), = train_reward.score_pairs(model, tok, [pair])
    assert good > bad


def test_head_and_lora_variants_train_a_fraction_of_the_weights():
    _, head = train_reward.load_model(default_reward_base(), "head")
    trainable, _ = train_reward.count_params(head)
    assert trainable == 384 + 1  # the score head only: hidden size weights + bias
    _, lora = train_reward.load_model(default_reward_base(), "lora")
    trainable_l, total_l = train_reward.count_params(lora)
    assert 385 < trainable_l < 0.05 * total_l


def test_reward_entry_point_rejects_bad_exports(tmp_path: Path, capsys):
    folder = write_export(tmp_path / "v1", [{"prompt": "p", "completion": "c"}], [], fmt="sft")
    assert train_reward.main(["--data", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "chosen and rejected" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert train_reward.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\nnot json\n')
    with pytest.raises(DataError, match=r"train\.jsonl:2"):
        load_pairs(tmp_path / "bad")


def test_row_shapes_of_every_preference_format(tmp_path: Path):
    conv = {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Go away."}]}
    assert to_pair(conv, "x").prompt == "Hi?" and to_pair(conv, "x").chosen == "Hello!"
    assert to_pair({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.5}, "x").margin == 1.5
    folder = write_export(tmp_path / "latest-test" / "v0002", [{"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}], [], fmt="sft")
    (tmp_path / "latest-test" / "latest").symlink_to("v0002")
    rows, test = load_completions(folder.parent)
    assert rows[0].prompt == "Q" and rows[0].completion == "A" and test == []
    pair_row = {"prompt": "P", "chosen": "fixed answer", "rejected": "first answer"}
    fixed = to_completion(pair_row, "x")  # correction-pairs rows train SFT with a pairwise check
    assert (fixed.completion, fixed.original) == ("fixed answer", "first answer")
    assert to_completion({"prompt": "P", "completion": "C", "original_model": "m1"}, "x").original is None
    with pytest.raises(DataError, match="needs prompt and completion"):
        to_completion({"prompt": "P"}, "x")


@pytest.mark.slow
def test_dpo_with_lora_saves_adapter_and_a_loadable_merged_model(pref_export: Path, tiny_lm: Path, tmp_path: Path):
    out = tmp_path / "dpo"
    assert train_dpo.main(["--data", str(pref_export), "--out", str(out), "--base", str(tiny_lm), "--lora",
                           "--max-steps", "4", "--batch-size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "lora" and metrics["steps"] == 4
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert metrics["eval_accuracy"] is not None and metrics["train_loss"] is not None
    assert (out / "adapter" / "adapter_config.json").is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in model.named_parameters())


@pytest.mark.slow
def test_sft_on_corrections_lowers_heldout_loss(sft_export: Path, tiny_lm: Path, tmp_path: Path):
    out = tmp_path / "sft"
    assert train_sft.main(["--data", str(sft_export), "--out", str(out), "--base", str(tiny_lm), "--epochs", "3",
                           "--lr", "3e-3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["eval_loss_before"], metrics
    assert metrics["eval_pairs"] == 8 and metrics["eval_accuracy"] is not None
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_dpo_and_sft_need_a_base_model(pref_export: Path, tmp_path: Path, capsys):
    assert train_dpo.main(["--data", str(pref_export), "--out", str(tmp_path / "o")]) == 2
    assert train_sft.main(["--data", str(pref_export), "--out", str(tmp_path / "o")]) == 2
    assert "--base is required" in capsys.readouterr().err
