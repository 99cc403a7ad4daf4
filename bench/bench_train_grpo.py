"""Rollout speed of `train-grpo` beside trl's own GRPOTrainer generation, same run.

    python bench/bench_train_grpo.py                       # 3 steps x 2 prompts x 4 completions (small: a shared machine)
    python bench/bench_train_grpo.py --steps 6 --prompts-per-step 4 --group 8 --threads 1

Data: `trajtune generate tasks --split train` (offline, seeded) into bench/out/train_grpo/: exactly
steps x prompts-per-step task records (one epoch), their prompts rendered by trajtune.chat exactly
as evaluate renders them. Both trainers get the same model, prompts (the same token ids: checked
and printed), group size (num_generations), completions per step, max completion length,
temperature 1.0 / top-p 1.0, learning rate, LoRA (r 16, alpha 32, dropout 0, all linear layers),
beta 0 and the same reward (trajtune's scorer). Each runs in a fresh process, so peak RSS is its own:

  plain trl   GRPOTrainer(GRPOConfig(bf16=False, use_cpu=True) + defaults) with the scorer as its reward:
              rollouts through trl's `model.generate` on left-padded batches, every completion of a
              group recomputing the shared prompt
  train-grpo  the real stage function (scripts/train_grpo.py) with the bench's sizes: rollouts through
              trl's `rollout_func` = the slot engine, each group's prompt prefilled once and its KV
              copied into the group's rows, no padding

Rollout time is measured the same way for both: wall time inside `GRPOTrainer._generate` (patched
with a timer in each worker; it covers generation plus trl's decode of the completions), and
generated tokens = the completion ids it returns (end-of-turn token included). Both decode a
batch until its longest completion ends, so generated tokens/s also depends on how long the samples
happen to be; the rollout seconds of the two (same prompts, group, length cap) compare the work.
Note trl's GRPOConfig turns gradient checkpointing on by default (train-grpo does not): the peer's
lower peak memory, and part of its step time. Step time = seconds
inside trainer.train() / optimizer steps (rollout + reward + loss + backward). Prints both runs,
the rollout tokens/s ratio (target >= 3x), the step-time ratio and peak memory.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# BENCH_OUT: another folder for the data and run folders (tests use a temporary one)
OUT = Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent / "out") / "train_grpo"
ROOT = Path(__file__).resolve().parents[1]
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def time_generation() -> dict:
    """Patch GRPOTrainer._generate (the one place both paths go through) with a timer."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    acc = {"seconds": 0.0, "tokens": 0, "completions": 0, "calls": 0, "prompt_ids": []}
    inner = GRPOTrainer._generate

    def timed(self, prompts):
        t0 = time.perf_counter()
        out = inner(self, prompts)
        acc["seconds"] += time.perf_counter() - t0
        prompt_ids, completion_ids = out[0], out[1]
        acc["tokens"] += sum(len(c) for c in completion_ids)
        acc["completions"] += len(completion_ids)
        acc["calls"] += 1
        if not acc["prompt_ids"]:
            acc["prompt_ids"] = [list(p) for p in prompt_ids]
        return out

    GRPOTrainer._generate = timed
    return acc


def result(name: str, acc: dict, steps: int, train_s: float) -> dict:
    return {"name": name, "steps": steps, "rollout_calls": acc["calls"], "completions": acc["completions"],
            "generated_tokens": acc["tokens"], "rollout_s": round(acc["seconds"], 2),
            "rollout_tokens_per_s": round(acc["tokens"] / acc["seconds"], 1) if acc["seconds"] else None,
            "train_s": round(train_s, 2), "step_s": round(train_s / max(steps, 1), 2), "peak_rss_mb": peak_rss_mb(),
            "prompt_ids_digest": hashlib.sha1(json.dumps(acc["prompt_ids"]).encode()).hexdigest()[:12] if acc["prompt_ids"] else None}


def worker_trl(args) -> dict:
    """The peer: a plain trl GRPO script with defaults (bf16 off so it runs on the CPU), the scorer as reward."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from trajtune.generation import stop_token_ids
    from trajtune.grpo import Replies, encode_tasks, reward_functions

    acc = time_generation()
    tok = AutoTokenizer.from_pretrained(args.model_path)
    rows, _ = encode_tasks(tok, read(Path(args.train)), 1 << 20)
    funcs, _ = reward_functions(Replies(tok, stop_token_ids(tok), args.max_new))
    batch = args.prompts_per_step * args.group
    cfg = GRPOConfig(output_dir=str(OUT / "trl-run"), max_steps=args.steps, per_device_train_batch_size=batch,
                     num_generations=args.group, max_completion_length=args.max_new, learning_rate=args.lr,
                     temperature=1.0, top_p=1.0, beta=0.0, bf16=False, use_cpu=True, report_to="none", save_strategy="no",
                     logging_steps=1, seed=args.seed, disable_tqdm=True, remove_unused_columns=False)
    trainer = GRPOTrainer(model=args.model_path, reward_funcs=funcs, args=cfg, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, peft_config=LoraConfig(**LORA))
    t0 = time.perf_counter()
    trainer.train()
    return result("plain trl GRPOTrainer (model.generate)", acc, trainer.state.global_step, time.perf_counter() - t0)


def worker_ours(args) -> dict:
    from trajtune.config import build
    from trajtune.scripts.train_grpo import Config, run as train_grpo

    acc = time_generation()
    cfg = build(Config, None, {
        "model": args.model_path, "data": [args.train], "output": str(OUT / f"train-grpo-run-{os.getpid()}"),
        "resume": "never", "allow_unreviewed": True, "max_steps": args.steps, "batch_size": args.prompts_per_step * args.group,
        "num_generations": args.group, "max_completion_length": args.max_new, "learning_rate": args.lr, "beta": 0.0,
        "temperature": 1.0, "top_p": 1.0, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "precision": "fp32",
        "save_steps": args.steps, "logging_steps": 1, "seed": args.seed, "max_length": 1 << 20, "min_records": 1,
        "rollout": "shared", "probe_tasks": 0, "auto_split": False, "share_prompt": not args.no_share_prompt})
    s = train_grpo(cfg)
    name = "trajtune train-grpo (shared-prefill slot engine" + (", trl's loss head: share_prompt off)" if args.no_share_prompt else ")")
    out = result(name, acc, s["global_step"], s["train_time_s"])
    out["loss_forward"] = s["loss_forward"]
    out["engine_prefilled_tokens"], out["engine_prompt_tokens"] = s["rollout"]["prefilled_tokens"], s["rollout"]["prompt_tokens"]
    # inside the slot engine (the rest of rollout_s is trl's own handling): prefill, decode steps and their time
    out.update({f"engine_{k}": s["rollout"][k] for k in ("seconds", "prefill_s", "decode_s", "decode_steps")})
    return out


def make_data(n: int, seed: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    gen = OUT / f"tasks-{n}-{seed}.jsonl"
    if not gen.exists():
        cmd = [sys.executable, "-m", "trajtune.cli.app", "generate", "tasks", "--split", "train", "-o", str(gen),
               "--count", str(n), "--seed", str(seed)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"generating tasks failed: {res.stderr[-2000:]}")
    records = read(gen)
    if len(records) < n:
        sys.exit(f"only {len(records)} tasks generated; need {n}")
    return gen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per trainer (default 3)")
    ap.add_argument("--prompts-per-step", type=int, default=2, help="prompts (groups) per step (default 2)")
    ap.add_argument("--group", type=int, default=4, help="completions per prompt, num_generations (default 4)")
    ap.add_argument("--max-new", type=int, default=128, help="max completion tokens (default 128)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch's default)")
    ap.add_argument("--model", default="default", help="model folder, .gguf or 'default' (SmolLM2-135M-Instruct)")
    ap.add_argument("--lever", action="store_true",
                    help="also run train-grpo with share_prompt off (trl's LM head over every position of full rows), "
                         "to measure that lever in the same run")
    ap.add_argument("--only", choices=["trl", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--no-share-prompt", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # worker process
        import warnings

        warnings.filterwarnings("ignore")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        res = (worker_trl if args.only == "trl" else worker_ours)(args)
        print("RESULT " + json.dumps(res))
        return 0

    from trajtune.models import resolve_model

    model_path = resolve_model(args.model)
    train_p = make_data(args.steps * args.prompts_per_step, args.seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = []
    for which in ("trl", "ours", "ours-noshare")[: 3 if args.lever else 2]:
        cmd = [sys.executable, __file__, "--only", which.split("-")[0], *(["--no-share-prompt"] if which == "ours-noshare" else []), "--model-path", model_path, "--train", str(train_p),
               "--steps", str(args.steps), "--prompts-per-step", str(args.prompts_per_step), "--group", str(args.group),
               "--max-new", str(args.max_new), "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads)]
        print(f"running {which} ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            sys.exit(f"{which} failed:\n{res.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    peer, ours = results[:2]
    print(f"model {args.model}; {args.steps} steps x {args.prompts_per_step} prompts x {args.group} completions "
          f"(max {args.max_new} new tokens, temperature 1.0); threads {args.threads or 'default'}")
    for r in results:
        print(json.dumps(r))
    same = peer["prompt_ids_digest"] == ours["prompt_ids_digest"]
    print(f"same prompt token ids in both: {'yes' if same else 'NO (the ratio compares different prompts)'}")
    print(f"rollout generated tokens/s: train-grpo {ours['rollout_tokens_per_s']} vs trl's generation "
          f"{peer['rollout_tokens_per_s']} -> {ours['rollout_tokens_per_s'] / peer['rollout_tokens_per_s']:.2f}x (target >= 3x)")
    # tokens/s depends on what was sampled: a batch runs until its longest completion ends (128 tokens in
    # most calls here), so shorter samples mean fewer tokens in the same time. Rollout seconds for the
    # same prompts, group and length cap compare the work itself.
    print(f"rollout seconds: train-grpo {ours['rollout_s']} vs trl {peer['rollout_s']} -> "
          f"{peer['rollout_s'] / ours['rollout_s']:.2f}x faster (generated {ours['generated_tokens']} vs {peer['generated_tokens']} tokens)")
    print(f"step time s: train-grpo {ours['step_s']} vs plain GRPOTrainer {peer['step_s']} -> "
          f"{peer['step_s'] / ours['step_s']:.2f}x faster")
    # the rest of a step: rewards, the loss's forward and backward over the completions, the optimizer
    rest = {r["name"]: round(r["step_s"] - r["rollout_s"] / max(r["steps"], 1), 2) for r in results}
    print("step time outside rollouts, s (rewards, loss forward + backward, optimizer): "
          + "; ".join(f"{k} {v}" for k, v in rest.items()))
    if args.lever:
        off = results[2]
        print(f"lever share_prompt (same run): step {off['step_s']} -> {ours['step_s']} s ({off['step_s'] / ours['step_s']:.2f}x), "
              f"outside rollouts {rest[off['name']]} -> {rest[ours['name']]} s "
              f"({rest[off['name']] / max(rest[ours['name']], 1e-9):.2f}x); peak RSS {off['peak_rss_mb']} -> {ours['peak_rss_mb']} MB")
    print(f"peak RSS MB: train-grpo {ours['peak_rss_mb']} vs {peer['peak_rss_mb']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
