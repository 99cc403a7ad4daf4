"""Speed of `train-dpo` beside a plain trl DPOTrainer script with default settings, same run.

    python bench/bench_train_dpo.py                  # 4 steps x 2 pairs each (small: a shared machine)
    python bench/bench_train_dpo.py --steps 20 --batch-size 4 --threads 1

Data: `trajtune generate preferences` (offline, seeded) into bench/out/train_dpo/: exactly
steps x batch training pairs (one epoch, so both trainers see the same pairs once and the
reference pass covers only what is trained on) plus held-out pairs split by prompt. Both trainers
get the same model, pairs, optimizer steps, batch (--batch-size pairs a step), learning rate, beta
and LoRA (r 16, alpha 32, dropout 0, all linear layers). The plain peer is slow on a CPU (a
checkpointed forward pass plus a reference forward every step), so keep --steps small on a shared
machine. Each runs in a fresh process, so peak RSS is its own:

  plain trl   DPOTrainer(DPOConfig(bf16=False, use_cpu=True) + defaults) on the same pairs rendered
              to text by trajtune.chat (trl's defaults: gradient checkpointing on, reference
              log-probs recomputed every step with the adapter disabled, LM head on every position)
  train-dpo   the real stage function (scripts/train_dpo.py) with its shipped defaults (reference
              log-probs once, no gradient checkpointing, bf16 autocast on CPUs with native bf16,
              LM head on completion positions only)

tokens/s = input tokens (chosen + rejected, attention mask, trl's own count) / seconds. For the
peer: seconds inside trainer.train(). For train-dpo: seconds inside trainer.train() PLUS the
trainer construction that runs the one reference pass, so precomputing is not a free lunch.
Quality is measured the same way for both after training, outside the timing, in fp32 on the
held-out pairs: DPO loss, reward accuracy and margin (reference = the model with the adapter off).
Prints both runs, the ratio (target >= 2x), the held-out metrics and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "train_dpo"
ROOT = Path(__file__).resolve().parents[1]
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def heldout_metrics(model, tokenizer, records: list[dict], beta: float) -> dict:
    """fp32 DPO loss / reward accuracy / margin on held-out pairs; reference = adapter disabled."""
    import torch
    import torch.nn.functional as F

    from trajtune.scripts.train_dpo import PairCollator, encode_pairs

    model = model.float().eval()
    rows, _ = encode_pairs(tokenizer, records, 4096, "drop")
    collate = PairCollator(tokenizer.pad_token_id)

    def logps(batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        tgt = batch["input_ids"][:, 1:]
        mask = batch["completion_mask"][:, 1:].float()
        lp = torch.log_softmax(logits, -1).gather(-1, tgt[..., None]).squeeze(-1)
        return (lp * mask).sum(-1)

    losses, accs, margins = [], [], []
    with torch.no_grad():
        for i in range(0, len(rows), 4):
            batch = collate(rows[i:i + 4])
            pol = logps(batch)
            with model.disable_adapter():
                ref = logps(batch)
            c, r = (pol - ref).chunk(2)
            m = beta * (c - r)
            losses += (-F.logsigmoid(m)).tolist()
            accs += (m > 0).float().tolist()
            margins += m.tolist()
    n = len(losses)
    return {"heldout_pairs": n, "dpo_loss": round(sum(losses) / n, 4), "reward_accuracy": round(sum(accs) / n, 4),
            "reward_margin": round(sum(margins) / n, 4)}


def worker_trl(args) -> dict:
    """The peer: a plain trl script with defaults (bf16 off so it runs on the CPU)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from trajtune.chat import render, render_prompt

    tok = AutoTokenizer.from_pretrained(args.model_path)
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for r in read(Path(args.train)):
        prompt = render_prompt(tok, r["prompt"], r.get("tools"))
        rows["prompt"].append(prompt)
        for side in ("chosen", "rejected"):  # the completion text exactly as trajtune renders it (trl adds EOS)
            full = render(tok, r["prompt"] + r[side], r.get("tools"))
            rows[side].append(full[len(prompt):].rstrip("\n").removesuffix(tok.eos_token))
    cfg = DPOConfig(output_dir=str(OUT / "trl-run"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                    learning_rate=args.lr, beta=args.beta, bf16=False, use_cpu=True, report_to="none", save_strategy="no",
                    logging_steps=max(1, args.steps // 4), seed=args.seed, disable_tqdm=True)
    trainer = DPOTrainer(model=args.model_path, args=cfg, train_dataset=Dataset.from_dict(rows), processing_class=tok,
                         peft_config=LoraConfig(**LORA))
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    peak = peak_rss_mb()
    tokens = int(trainer._total_train_tokens)
    return {"name": "plain trl DPOTrainer", "steps": trainer.state.global_step, "tokens": tokens, "seconds": round(secs, 1),
            "tokens_per_s": round(tokens / secs, 1), "peak_rss_mb": peak,
            "gradient_checkpointing": bool(cfg.gradient_checkpointing), "precompute_ref_log_probs": cfg.precompute_ref_log_probs,
            **heldout_metrics(trainer.model, tok, read(Path(args.eval)), args.beta)}


def worker_ours(args) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.config import build
    from trajtune.scripts.train_dpo import Config as TrainDPOConfig, run as train_dpo

    cfg = build(TrainDPOConfig, ROOT / "configs" / "train_dpo" / "smollm2-135m.yaml", {
        "model": args.model_path, "data": [args.train], "output": str(OUT / f"train-dpo-run-{os.getpid()}"),
        "resume": "never", "allow_unreviewed": True, "max_steps": args.steps, "batch_size": args.batch_size,
        "gradient_accumulation_steps": 1, "learning_rate": args.lr, "beta": args.beta, "save_steps": args.steps,
        "logging_steps": max(1, args.steps // 4), "seed": args.seed, "max_length": 4096, "min_records": 1})
    s = train_dpo(cfg)
    secs = s["train_time_s"] + s["reference_time_s"]
    tok = AutoTokenizer.from_pretrained(s["final"])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.model_path), s["final"])
    return {"name": "trajtune train-dpo", "steps": s["global_step"], "tokens": s["tokens_seen"], "seconds": round(secs, 1),
            "reference_pass_s": s["reference_time_s"], "tokens_per_s": round(s["tokens_seen"] / secs, 1),
            "peak_rss_mb": s["peak_memory_mb"], "precision": s["precision"],
            **heldout_metrics(model, tok, read(Path(args.eval)), args.beta)}


def make_data(n_train: int, n_eval: int, seed: int) -> tuple[Path, Path]:
    from trajtune import training

    OUT.mkdir(parents=True, exist_ok=True)
    count = int((n_train + n_eval) * 1.3) + 10
    gen = OUT / f"generated-{count}-{seed}.jsonl"
    if not gen.exists():
        cmd = [sys.executable, "-m", "trajtune.cli.app", "generate", "preferences", "-o", str(gen), "--count", str(count),
               "--seed", str(seed)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"generating data failed: {res.stderr[-2000:]}")
    records = read(gen)
    train, ev = training.split_by_prompt(records, n_eval / len(records), seed)
    if len(train) < n_train:
        sys.exit(f"only {len(train)} training pairs generated; need {n_train}")
    train_p, eval_p = OUT / "train.jsonl", OUT / "eval.jsonl"
    train_p.write_text("".join(json.dumps(r) + "\n" for r in train[:n_train]))
    eval_p.write_text("".join(json.dumps(r) + "\n" for r in ev[:n_eval]))
    return train_p, eval_p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per trainer (default 4)")
    ap.add_argument("--batch-size", type=int, default=2, help="pairs per step (default 2)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--eval-pairs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch's default)")
    ap.add_argument("--model", default="default", help="model folder, .gguf or 'default' (SmolLM2-135M-Instruct)")
    ap.add_argument("--only", choices=["trl", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--eval", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # worker process
        import warnings

        warnings.filterwarnings("ignore")
        res = (worker_trl if args.only == "trl" else worker_ours)(args)
        print("RESULT " + json.dumps(res))
        return 0

    from trajtune.models import resolve_model

    model_path = resolve_model(args.model)
    train_p, eval_p = make_data(args.steps * args.batch_size, args.eval_pairs, args.seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = []
    for which in ("trl", "ours"):
        cmd = [sys.executable, __file__, "--only", which, "--model-path", model_path, "--train", str(train_p),
               "--eval", str(eval_p), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--beta", str(args.beta), "--seed", str(args.seed)]
        print(f"running {which} ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            sys.exit(f"{which} failed:\n{res.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    peer, ours = results
    print(f"model {args.model}; {args.steps} steps x {args.batch_size} pairs ({args.steps * args.batch_size} training pairs, "
          f"one epoch); {args.eval_pairs} held-out pairs; threads {args.threads or 'default'}")
    for r in results:
        print(json.dumps(r))
    print(f"tokens/s: train-dpo {ours['tokens_per_s']} vs plain DPOTrainer {peer['tokens_per_s']} -> "
          f"{ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x (target >= 2x)")
    print(f"held-out DPO loss: train-dpo {ours['dpo_loss']} vs {peer['dpo_loss']}; reward accuracy "
          f"{ours['reward_accuracy']} vs {peer['reward_accuracy']}; margin {ours['reward_margin']} vs {peer['reward_margin']}")
    print(f"peak RSS MB: train-dpo {ours['peak_rss_mb']} vs {peer['peak_rss_mb']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
