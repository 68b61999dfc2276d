"""Supervised fine-tuning (TRL SFTTrainer) on annotators' corrections.

    python -m scheduler.finetune.train_sft --data exports/demo/sft/v0002 --out runs/sft --base MODEL [--lora]

Rows are the `sft` export's prompt/completion pairs (or `messages` conversations); the loss covers the
completion only. Held-out metrics: eval loss and perplexity on the test split and, when test rows carry
the `original` answer the correction replaced, pairwise accuracy: the share of rows where the model
now gives the corrected answer a higher mean per-token log-likelihood than the original.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from typing import Any

from scheduler.finetune.common import (
    Completion,
    causal_lm_parser,
    count_params,
    last_train_loss,
    load_causal_lm,
    load_completions,
    load_or_report,
    log,
    lora_config,
    save_trained,
    setup_torch,
    trl_config_kwargs,
    write_metrics,
)


def _dataset(rows: list[Completion]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r.prompt, "completion": r.completion} for r in rows])


def mean_logprob(model: Any, tokenizer: Any, prompt: str, completion: str, max_length: int) -> float:
    """Mean log-probability per completion token given the prompt."""
    import torch

    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (p_ids + c_ids)[-max_length:]
    n_c = min(len(c_ids), len(ids) - 1)
    x = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
    target = x[0, 1:]
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)[-n_c:]
    return float(token_logp.mean())


def main(argv: list[str] | None = None) -> int:
    p = causal_lm_parser("Supervised fine-tuning (TRL) on corrections.")
    args = p.parse_args(argv)
    if not args.base:
        print("error: --base is required for SFT (a local causal LM path or hub name)", file=sys.stderr)
        return 2
    setup_torch(args.seed, args.threads)
    loaded = load_or_report(load_completions, args.data)
    if loaded is None:
        return 2
    rows, test = loaded
    from trl import SFTConfig, SFTTrainer

    tokenizer, model = load_causal_lm(args.base)
    lr = args.lr or (5e-4 if args.lora else 5e-5)
    with tempfile.TemporaryDirectory(prefix="sft-") as scratch:
        config = SFTConfig(**trl_config_kwargs(args, scratch, lr))
        trainer = SFTTrainer(model=model, args=config, train_dataset=_dataset(rows),
                             eval_dataset=_dataset(test) if test else None, processing_class=tokenizer,
                             peft_config=lora_config(args.lora_r) if args.lora else None)
        trainable, total = count_params(trainer.model)
        log(f"sft{'/lora' if args.lora else ''}: {len(rows)} train rows, {len(test)} test rows, "
            f"{trainable:,} of {total:,} parameters trainable, lr {lr:g}, base {args.base}")
        before = trainer.evaluate().get("eval_loss") if test else None
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0
        evaluation = trainer.evaluate() if test else {}
    trained = trainer.model
    trained.eval()
    judged = [r for r in test if r.original]
    wins = 0.0
    for r in judged:
        better = mean_logprob(trained, tokenizer, r.prompt, r.completion, args.max_length)
        worse = mean_logprob(trained, tokenizer, r.prompt, r.original or "", args.max_length)
        wins += 1.0 if better > worse else 0.5 if better == worse else 0.0
    eval_loss = evaluation.get("eval_loss")
    metrics = {
        "method": "sft", "variant": "lora" if args.lora else "full", "base_model": args.base,
        "train_rows": len(rows), "test_rows": len(test), "steps": trainer.state.global_step, "learning_rate": lr,
        "train_loss": last_train_loss(trainer.state.log_history), "eval_loss": eval_loss, "eval_loss_before": before,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
        "eval_accuracy": wins / len(judged) if judged else None, "eval_pairs": len(judged),
        "train_seconds": round(train_seconds, 3),
        "trainable_params": trainable, "total_params": total,
    }
    save_trained(trained, tokenizer, args.out, lora=args.lora)
    write_metrics(args.out, metrics)
    log(f"done: train loss {metrics['train_loss']}, eval loss {eval_loss}, "
        f"corrected-over-original accuracy {metrics['eval_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
