"""Reward model: a sequence classifier with one output trained with the pairwise Bradley–Terry loss.

    python -m scheduler.finetune.train_reward --data exports/demo/trl/v0003 --out runs/rm [--variant lora]

loss = -log σ(r(prompt, chosen) − r(prompt, rejected) − margin). Variants: `full` (every weight),
`lora` (peft adapters + the score head; the merged model is saved, the adapter under adapter/) and
`head` (frozen backbone, only the classification head trains). The held-out metric is pairwise
accuracy on the test split: the share of pairs where the chosen answer scores higher.

A plain torch loop rather than TRL's RewardTrainer: the same loss, but the loop can report pairs/s,
run the head variant without a Trainer's overhead, and stay fast enough for CPU tests.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from scheduler.finetune.common import (
    DataError,
    Pair,
    base_parser,
    count_params,
    default_reward_base,
    load_or_report,
    load_pairs,
    log,
    save_trained,
    setup_torch,
    write_metrics,
)

VARIANTS = ("full", "lora", "head")
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4, "head": 2e-3}


def load_model(base: str, variant: str, *, lora_r: int = 8) -> tuple[Any, Any]:
    """Tokenizer and a one-output classifier prepared for `variant` (LoRA wrapped, or backbone frozen)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    if variant == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r,
                                                 lora_dropout=0.0, target_modules="all-linear"))
    elif variant == "head":
        prefix = model.base_model_prefix + "."
        for name, param in model.named_parameters():
            param.requires_grad = not name.startswith(prefix)
    return tokenizer, model


def _encode(tokenizer: Any, prompts: list[str], answers: list[str], max_length: int) -> Any:
    if any(prompts):
        return tokenizer(prompts, answers, truncation=True, max_length=max_length, padding=True,
                         return_tensors="pt")
    return tokenizer(answers, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def score_pairs(model: Any, tokenizer: Any, pairs: list[Pair], *, batch_size: int = 32,
                max_length: int = 256) -> list[tuple[float, float]]:
    """(reward of chosen, reward of rejected) for each pair, in eval mode without gradients."""
    import torch

    model.eval()
    out: list[tuple[float, float]] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            prompts = [p.prompt for p in batch] * 2
            answers = [p.chosen for p in batch] + [p.rejected for p in batch]
            enc = _encode(tokenizer, prompts, answers, max_length).to(model.device)
            rewards = model(**enc).logits.squeeze(-1).float().tolist()
            n = len(batch)
            out.extend(zip(rewards[:n], rewards[n:], strict=True))
    return out


def pairwise_accuracy(scores: list[tuple[float, float]]) -> float | None:
    """Share of pairs ranked right (a tie counts half), None without pairs."""
    if not scores:
        return None
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores) / len(scores)


def train(pairs: list[Pair], test: list[Pair], *, base: str, variant: str = "full", epochs: float = 1.0,
          max_steps: int = -1, batch_size: int = 8, lr: float | None = None, max_length: int = 256,
          seed: int = 0, lora_r: int = 8) -> tuple[Any, Any, dict[str, Any]]:
    """Train and evaluate; returns (model, tokenizer, metrics)."""
    import random

    import torch

    if variant not in VARIANTS:
        raise DataError(f"unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    tokenizer, model = load_model(base, variant, lora_r=lora_r)
    trainable, total = count_params(model)
    lr = lr or DEFAULT_LR[variant]
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    steps = max_steps if max_steps > 0 else max(1, math.ceil(steps_per_epoch * epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model, opt = accelerator.prepare(model, opt)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    say = log if accelerator.is_main_process else (lambda _msg: None)
    say(f"reward/{variant}: {len(pairs)} train pairs, {len(test)} test pairs, {steps} steps on {world} "
        f"process(es) ({accelerator.device}), {trainable:,} of {total:,} parameters trainable, lr {lr:g}, base {base}")
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    seen = 0
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        if not order:
            order = list(range(len(pairs)))
            rng.shuffle(order)
        # Every process draws the same global batch (same seed) and trains on its own slice of it.
        idx, order = order[:batch_size], order[batch_size:]
        batch = [pairs[i] for i in idx[rank::world]] or [pairs[idx[0]]]
        enc = _encode(tokenizer, [p.prompt for p in batch] * 2, [p.chosen for p in batch] + [p.rejected for p in batch],
                      max_length).to(accelerator.device)
        rewards = model(**enc).logits.squeeze(-1).float()
        n = len(batch)
        margin = torch.tensor([p.margin for p in batch], dtype=rewards.dtype, device=rewards.device)
        loss = -torch.nn.functional.logsigmoid(rewards[:n] - rewards[n:] - margin).mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        seen += len(idx)
        if (step + 1) % 10 == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - t0
            say(f"step {step + 1}/{steps} loss {sum(losses[-10:]) / len(losses[-10:]):.4f} "
                f"({seen / elapsed:.1f} pairs/s)")
    train_seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    t1 = time.perf_counter()
    scores = score_pairs(model, tokenizer, test, max_length=max_length) if accelerator.is_main_process else []
    accuracy = pairwise_accuracy(scores)
    eval_seconds = time.perf_counter() - t1
    tail = losses[-max(1, steps_per_epoch):]
    metrics = {
        "method": "reward", "variant": variant, "base_model": base,
        "train_pairs": len(pairs), "test_pairs": len(test), "steps": steps, "epochs": steps / steps_per_epoch,
        "batch_size": batch_size, "learning_rate": lr,
        "train_loss": sum(tail) / len(tail), "first_loss": losses[0], "final_loss": losses[-1],
        "eval_accuracy": accuracy,
        "eval_mean_margin": (sum(c - r for c, r in scores) / len(scores)) if scores else None,
        "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "pairs_per_second": round(seen / train_seconds, 3) if train_seconds else None,
        "trainable_params": trainable, "total_params": total, "processes": world,
        "main_process": accelerator.is_main_process,
    }
    acc = "n/a (empty test split)" if accuracy is None else f"{accuracy:.3f}"
    say(f"done: train loss {metrics['train_loss']:.4f}, held-out pairwise accuracy {acc}")
    return model, tokenizer, metrics


def main(argv: list[str] | None = None) -> int:
    p = base_parser("Train a Bradley–Terry reward model on a preference export.")
    p.add_argument("--variant", choices=VARIANTS, default="full")
    p.add_argument("--lora-r", type=int, default=8)
    p.set_defaults(batch_size=16, max_length=128, epochs=2.0)
    args = p.parse_args(argv)
    setup_torch(args.seed, args.threads)
    loaded = load_or_report(load_pairs, args.data)
    if loaded is None:
        return 2
    pairs, test = loaded
    base = args.base or default_reward_base()
    model, tokenizer, metrics = train(pairs, test, base=base, variant=args.variant, epochs=args.epochs,
                                      max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                                      max_length=args.max_length, seed=args.seed, lora_r=args.lora_r)
    out: Path = args.out
    if not metrics.pop("main_process"):
        return 0  # under accelerate/torchrun only the main process saves
    save_trained(model, tokenizer, out, lora=args.variant == "lora")
    write_metrics(out, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
