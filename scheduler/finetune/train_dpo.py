"""DPO with TRL on a preference export; LoRA adapters through peft with `--lora`.

    python -m scheduler.finetune.train_dpo --data exports/demo/trl/v0003 --out runs/dpo --base MODEL [--lora]

The held-out metric is TRL's implicit-reward accuracy on the test split (the share of pairs where
β·log π/π_ref is higher for the chosen answer). With `--lora` the adapter is saved under adapter/ and
the merged model at the top, so `labelbot generate` can load the result with plain transformers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

from scheduler.finetune.common import (
    Pair,
    causal_lm_parser,
    count_params,
    last_train_loss,
    load_causal_lm,
    load_or_report,
    load_pairs,
    log,
    lora_config,
    save_trained,
    setup_torch,
    trl_config_kwargs,
    write_metrics,
)


def _dataset(pairs: list[Pair]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])


def main(argv: list[str] | None = None) -> int:
    p = causal_lm_parser("Direct preference optimisation (TRL) on a preference export.")
    p.add_argument("--beta", type=float, default=0.1)
    args = p.parse_args(argv)
    if not args.base:
        print("error: --base is required for DPO (a local causal LM path or hub name)", file=sys.stderr)
        return 2
    setup_torch(args.seed, args.threads)
    loaded = load_or_report(load_pairs, args.data)
    if loaded is None:
        return 2
    pairs, test = loaded
    from trl import DPOConfig, DPOTrainer

    tokenizer, model = load_causal_lm(args.base)
    lr = args.lr or (5e-4 if args.lora else 5e-5)
    with tempfile.TemporaryDirectory(prefix="dpo-") as scratch:
        config = DPOConfig(**trl_config_kwargs(args, scratch, lr), beta=args.beta)
        trainer = DPOTrainer(model=model, args=config, train_dataset=_dataset(pairs),
                             eval_dataset=_dataset(test) if test else None, processing_class=tokenizer,
                             peft_config=lora_config(args.lora_r) if args.lora else None)
        trainable, total = count_params(trainer.model)
        log(f"dpo{'/lora' if args.lora else ''}: {len(pairs)} train pairs, {len(test)} test pairs, "
            f"{trainable:,} of {total:,} parameters trainable, lr {lr:g}, base {args.base}")
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0
        evaluation = trainer.evaluate() if test else {}
    log(f"evaluation: {evaluation}")
    accuracy = evaluation.get("eval_rewards/accuracies")
    metrics = {
        "method": "dpo", "variant": "lora" if args.lora else "full", "base_model": args.base,
        "train_pairs": len(pairs), "test_pairs": len(test), "steps": trainer.state.global_step,
        "learning_rate": lr, "beta": args.beta,
        "train_loss": last_train_loss(trainer.state.log_history),
        "eval_loss": evaluation.get("eval_loss"), "eval_accuracy": accuracy,
        "eval_reward_margin": evaluation.get("eval_rewards/margins"),
        "train_seconds": round(train_seconds, 3),
        "pairs_per_second": round(trainer.state.global_step * args.batch_size / train_seconds, 3)
        if train_seconds else None,
        "trainable_params": trainable, "total_params": total,
    }
    save_trained(trainer.model, tokenizer, args.out, lora=args.lora)
    write_metrics(args.out, metrics)
    log(f"done: train loss {metrics['train_loss']}, held-out implicit-reward accuracy {accuracy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
