"""Speed of `train-sft` beside a plain trl SFTTrainer script with default settings, same run.

    python bench/bench_train_sft.py                 # 10 steps each (keep it small on a shared machine)
    python bench/bench_train_sft.py --steps 40 --count 400

Data: `trajtune generate trajectories` (offline, seeded) into bench/out/, >= 200 training
trajectories plus a held-out validation file split by prompt. Both trainers get the same model,
the same records, the same optimizer steps, batch (8 records a step), learning rate and LoRA
(r 16, alpha 32, dropout 0.05, all linear layers). Each runs in a fresh process, so peak RSS is
its own:

  plain trl    SFTTrainer(SFTConfig(bf16=False, use_cpu=True) + defaults) on the same conversations
               rendered to text by trajtune.chat (trl's defaults: gradient checkpointing on, loss on
               every token, padded batches in random order, logits for every position)
  train-sft    the real stage function (scripts/train_sft.py) with its shipped defaults (the same
               8 records a step, split into micro-batches by micro_batch_size: auto, token-weighted)

tokens/s = non-padding input tokens the trainer consumed / seconds inside trainer.train()
(train-sft's figure includes its end-of-run checkpoint). The validation loss is measured the same
way for both after training, outside the timing: fp32, mean cross-entropy over the assistant tokens
of the held-out records (what the model is trained to produce). Prints both runs, the ratio
(target >= 2.5x), the eval losses and peak memory.
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

OUT = Path(__file__).resolve().parent / "out" / "train_sft"
ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def eval_loss(model, tokenizer, records: list[dict]) -> float:
    """fp32 mean next-token cross-entropy over assistant tokens of held-out records."""
    import torch

    from trajtune.scripts.train_sft import PadCollator, encode_records, label_loss

    model = model.float().eval()
    ex, _ = encode_records(tokenizer, records, 4096, "drop")
    total = count = 0.0
    with torch.no_grad():
        for i in range(0, len(ex), 8):
            batch = PadCollator(tokenizer.pad_token_id)(ex[i:i + 8])
            loss, _ = label_loss(model, batch, True)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(loss) * n
            count += n
    return round(total / count, 4)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worker_trl(args) -> dict:
    """The peer: a plain trl script with defaults (bf16 off so it runs on the CPU)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trajtune.chat import render

    model_path = args.model_path
    tok = AutoTokenizer.from_pretrained(model_path)
    texts = [render(tok, r["messages"], r.get("tools")) for r in read(Path(args.train))]
    cfg = SFTConfig(output_dir=str(OUT / "trl-run"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                    learning_rate=args.lr, bf16=False, use_cpu=True, report_to="none", save_strategy="no",
                    logging_steps=max(1, args.steps // 5), seed=args.seed, disable_tqdm=True)
    trainer = SFTTrainer(model=model_path, args=cfg, train_dataset=Dataset.from_dict({"text": texts}), processing_class=tok,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    peak = peak_rss_mb()
    tokens = int(trainer._total_train_tokens)
    return {"name": "plain trl SFTTrainer", "steps": trainer.state.global_step, "tokens": tokens, "train_s": round(secs, 1),
            "tokens_per_s": round(tokens / secs, 1), "peak_rss_mb": peak,
            "gradient_checkpointing": bool(cfg.gradient_checkpointing),
            "eval_loss": eval_loss(trainer.model, tok, read(Path(args.eval)))}


def worker_ours(args) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.config import build
    from trajtune.scripts.train_sft import Config as TrainSFTConfig, run as train_sft

    run = OUT / "train-sft-run"
    cfg = build(TrainSFTConfig, None, {
        "model": args.model_path, "data": [args.train], "output": str(run), "resume": "never", "allow_unreviewed": True,
        "auto_split": False, "max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
        "save_steps": args.steps, "logging_steps": max(1, args.steps // 5), "seed": args.seed, "max_length": 4096})
    s = train_sft(cfg)
    tok = AutoTokenizer.from_pretrained(s["final"])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.model_path), s["final"])
    return {"name": "trajtune train-sft", "steps": s["global_step"], "tokens": s["tokens_seen"], "train_s": s["train_time_s"],
            "tokens_per_s": s["tokens_per_second"], "peak_rss_mb": s["peak_memory_mb"], "precision": s["precision"],
            "batch": s.get("batch"),
            "eval_loss": eval_loss(model, tok, read(Path(args.eval)))}


def make_data(count: int, seed: int) -> tuple[Path, Path]:
    from trajtune import training

    OUT.mkdir(parents=True, exist_ok=True)
    gen = OUT / f"generated-{count}-{seed}.jsonl"
    if not gen.exists():
        cmd = [sys.executable, "-m", "trajtune.cli.app", "generate", "trajectories", "-o", str(gen), "--count", str(count), "--seed", str(seed)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"generating data failed: {res.stderr[-2000:]}")
    records = read(gen)
    train, ev = training.split_by_prompt(records, 0.15, seed)
    train_p, eval_p = OUT / "train.jsonl", OUT / "eval.jsonl"
    train_p.write_text("".join(json.dumps(r) + "\n" for r in train))
    eval_p.write_text("".join(json.dumps(r) + "\n" for r in ev))
    return train_p, eval_p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per trainer (default 10)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--count", type=int, default=260, help="trajectories to generate (>= 235 keeps >= 200 for training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="default", help="model folder, .gguf or 'default' (SmolLM2-135M-Instruct)")
    ap.add_argument("--only", choices=["trl", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--eval", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # worker process
        res = (worker_trl if args.only == "trl" else worker_ours)(args)
        print("RESULT " + json.dumps(res))
        return 0

    from trajtune.models import resolve_model

    model_path = resolve_model(args.model)
    train, ev = make_data(args.count, args.seed)
    n_train, n_eval = len(read(train)), len(read(ev))
    print(f"model {args.model}; {n_train} training trajectories, {n_eval} held out (by prompt); "
          f"{args.steps} steps x {args.batch_size} records; lr {args.lr}", flush=True)
    results = []
    for which in ("trl", "ours"):
        cmd = [sys.executable, __file__, "--only", which, "--model-path", model_path, "--train", str(train), "--eval", str(ev),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
        line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
        if res.returncode != 0 or not line:
            print(res.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[0][7:]))
        r = results[-1]
        print(f"  {r['name']:<22} {r['tokens_per_s']:>8.1f} tok/s  ({r['tokens']} tokens in {r['train_s']} s, {r['steps']} steps)  "
              f"eval loss {r['eval_loss']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    trl_r, ours = results
    print(f"speed ratio train-sft / plain trl: {ours['tokens_per_s'] / trl_r['tokens_per_s']:.2f}x (target >= 2.5x)")
    print(f"eval loss (fp32, assistant tokens): train-sft {ours['eval_loss']:.4f} vs plain trl {trl_r['eval_loss']:.4f} "
          f"({'no worse' if ours['eval_loss'] <= trl_r['eval_loss'] + 1e-4 else 'WORSE'})")
    b = ours.get("batch") or {}
    print(f"peak memory: train-sft {ours['peak_rss_mb']:.0f} MB vs plain trl {trl_r['peak_rss_mb']:.0f} MB "
          f"({'no higher' if ours['peak_rss_mb'] <= trl_r['peak_rss_mb'] else 'HIGHER'}; train-sft micro-batches of "
          f"{b.get('micro_batch_size')} x {b.get('gradient_accumulation_steps')}, checkpointing "
          f"{'on' if b.get('gradient_checkpointing') else 'off'}; trl checkpointing "
          f"{'on' if trl_r.get('gradient_checkpointing') else 'off'})")
    print("JSON " + json.dumps({"trl": trl_r, "train_sft": ours}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
