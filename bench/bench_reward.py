"""Reward-model training throughput on CPU (pairs/s), per variant: full fine-tune, LoRA, frozen backbone + head.

    python bench/bench_reward.py [--steps 12] [--repeats 3] [--batch-size 16] [--max-length 128] [--threads 0]

Trains the shipped MiniLM (22.7M parameters) with the Bradley–Terry loss on generated preference pairs
(train_reward.train, the code the jobs run) and reports the median pairs/s of the training loop over
`repeats` runs (model loading and evaluation excluded; one pair = chosen + rejected forward/backward).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", default="full,lora,head")
    args = p.parse_args()

    import torch
    import transformers

    from scheduler.finetune.common import Pair, default_reward_base, setup_torch
    from scheduler.finetune.synthetic import preference_rows
    from scheduler.finetune.train_reward import train

    transformers.logging.set_verbosity_error()
    setup_torch(0, args.threads)
    rows = preference_rows(args.steps * args.batch_size, seed=11)
    pairs = [Pair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    base = default_reward_base()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; MiniLM; "
          f"batch {args.batch_size} pairs, max length {args.max_length}, {args.steps} steps x {args.repeats} runs")
    print(f"{'variant':8} {'median pairs/s':>15} {'min':>8} {'max':>8} {'trainable params':>17} {'wall s':>8}")
    results = {}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        rates = []
        t0 = time.perf_counter()
        trainable = 0
        for r in range(args.repeats):
            _, _, m = train(pairs, [], base=base, variant=variant, max_steps=args.steps, batch_size=args.batch_size,
                            max_length=args.max_length, seed=r)
            rates.append(m["pairs_per_second"])
            trainable = m["trainable_params"]
        results[variant] = statistics.median(rates)
        print(f"{variant:8} {statistics.median(rates):15.1f} {min(rates):8.1f} {max(rates):8.1f} {trainable:17,} "
              f"{time.perf_counter() - t0:8.1f}", flush=True)
    if "full" in results:
        for variant, rate in results.items():
            if variant != "full":
                print(f"{variant} / full: {rate / results['full']:.2f}x")


if __name__ == "__main__":
    main()
