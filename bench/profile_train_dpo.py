"""Where a train-dpo step's time goes now (the training-speed issue: "the same for train-dpo").

    python bench/profile_train_dpo.py                                  # the demo's DPO setup on generated pairs
    python bench/profile_train_dpo.py --pairs runs/demo/data/prefs.jsonl --adapter runs/demo/sft/final --detail 25

Runs the real train-dpo stage (scripts/train_dpo.py, the demo's config configs/train_dpo/smollm2-135m.yaml:
LoRA r 16 on every linear layer, one pair a forward, 8 accumulated per optimizer step, the reference
log-probs precomputed once, bf16 autocast, the shared-prompt forward and the completion-only head) for
--steps optimizer steps and profiles the last one with torch.profiler (a TrainerCallback from
on_step_begin to on_step_end, so collation, trl's loss and the optimizer are inside). Prints the time
of each step, the reference pass, and the profiled step's self CPU time by group (the same groups as
bench/profile_train_sft.py). Data: the demo's preference pairs (`generate preferences` over the shipped
catalog + 1,000 synthetic tools, the demo's shapes; seed 0) unless --pairs is given. Measure alone:
other processes on the 2 cores distort every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "profile_train_dpo"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_train_sft import SHAPES, report  # noqa: E402


def make_pairs(count: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    tools, data = OUT / "synth_tools.json", OUT / f"prefs-{count}.jsonl"
    tt = [sys.executable, "-m", "trajtune.cli.app"]
    if not tools.exists():
        subprocess.run(tt + ["generate", "tools", "--synthesize", "1000", "--seed", "0", "-o", str(tools)], check=True, capture_output=True)
    if not data.exists():
        subprocess.run(tt + ["generate", "preferences", "--catalog", str(ROOT / "data" / "tools"), "--catalog", str(tools),
                             "--template-share", "0.2", "--shapes", SHAPES, "--count", str(count), "--seed", "0",
                             "-o", str(data)], check=True, capture_output=True)
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", help="preference pairs (default: generated as the demo generates them)")
    ap.add_argument("--adapter", help="an SFT adapter to start from, as the demo does (default: a new LoRA)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps; the last is profiled (default 3)")
    ap.add_argument("--detail", type=int, default=0, help="also list the N costliest ops by input shapes")
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile as prof_ctx
    from transformers import TrainerCallback

    from trajtune import training
    from trajtune.config import build
    from trajtune.scripts.train_dpo import Config, run

    data = Path(args.pairs) if args.pairs else make_pairs(8 * args.steps + 8)
    state: dict = {"steps": [], "prof": None}

    class ProfileLastStep(TrainerCallback):
        def on_step_begin(self, a, st, control, **kw):
            state["t"] = time.perf_counter()
            if st.global_step == args.steps - 1:
                state["prof"] = prof_ctx(activities=[ProfilerActivity.CPU], record_shapes=True)
                state["prof"].__enter__()

        def on_step_end(self, a, st, control, **kw):
            if state["prof"] is not None and st.global_step == args.steps:
                state["prof"].__exit__(None, None, None)
            state["steps"].append(round(time.perf_counter() - state["t"], 2))

    callbacks = training.RunContext.callbacks
    training.RunContext.callbacks = lambda self, early=None: [*callbacks(self, early), ProfileLastStep()]
    cfg = build(Config, ROOT / "configs" / "train_dpo" / "smollm2-135m.yaml", {
        "model": args.model, "data": [str(data)], "output": str(OUT / f"run-{os.getpid()}"), "resume": "never",
        "adapter": args.adapter, "max_steps": args.steps, "allow_unreviewed": True, "min_records": 1,
        "auto_split": False, "save_steps": 1000, "eval_steps": 1000, "logging_steps": 1})
    t0 = time.perf_counter()
    s = run(cfg)
    wall = time.perf_counter() - t0
    print(f"train-dpo: {args.steps} steps of {cfg.batch_size * cfg.gradient_accumulation_steps} pairs, {torch.get_num_threads()} threads; "
          f"steps {state['steps']} s (the last under the profiler); whole run {wall:.1f} s, train_time_s "
          f"{s.get('train_time_s')}, tokens/s {s.get('tokens_per_second')}, peak RSS {s.get('peak_memory_mb')} MB")
    ref = {k: v for k, v in s.items() if "ref" in k and isinstance(v, (int, float))}
    if ref:
        print(f"reference pass: {ref}")
    shares = report(state["prof"], args.detail, what=f"optimizer step {args.steps}")
    print("JSON " + json.dumps({"steps_s": state["steps"], "shares": shares, "wall_s": round(wall, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
