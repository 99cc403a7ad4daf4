"""Speed of `train-sft` beside two trl SFTTrainer peers (plain defaults and tuned) and the CPU's
own ceiling, all measured in one run.

    python bench/bench_train_sft.py                 # 10 steps each (keep it small on a shared machine)
    python bench/bench_train_sft.py --steps 40 --count 400
    python bench/bench_train_sft.py --model PATH --steps 2 --count 40   # smoke run on a tiny local model

Data: `trajtune generate trajectories` (offline, seeded) into bench/out/, >= 200 training
trajectories plus a held-out validation file split by prompt. All three trainers get the same
model, the same records, the same optimizer steps, batch (8 records a step), learning rate and
LoRA (r 16, alpha 32, dropout 0.05, all linear layers). Each runs in a fresh process, so peak RSS
is its own, and so does the ceiling measurement (after the trainers, nothing else running):

  plain trl    SFTTrainer(SFTConfig(bf16=False, use_cpu=True) + defaults) on the same conversations
               rendered to text by trajtune.chat (trl's defaults: gradient checkpointing on, loss on
               every token, padded batches in random order, max_length 1024)
  tuned trl    the best settings trl 1.16 offers for this job on a CPU: SFTConfig(bf16=True,
               use_cpu=True) (bf16 autocast on the CPU, accepted by transformers' TrainingArguments
               with use_cpu), gradient_checkpointing=False, train_sampling_strategy="group_by_length"
               (length-grouped batches, less padding), max_length 4096 (no truncation, like train-sft),
               model_init_kwargs attn_implementation="eager" (train-sft's CPU attention), and the
               loss on assistant turns only: trl's pre-tokenized path, input_ids + labels made by
               trajtune.chat's renderer (the exact tokens and labels train-sft trains on).
               Not used, and why:
               - assistant_only_loss: needs a chat template with {% generation %} markers; SmolLM2's
                 ChatML template has none, trl's get_training_chat_template knows no patched version
                 of it, and trajtune renders tool calls/results in its own fallback format (tool
                 results as user turns) that trl's conversational path would not reproduce.
               - completion_only_loss on a prompt/completion split: a split at the last assistant
                 turn would drop the earlier assistant turns (tool calls) from the loss, i.e. a
                 different job; the pre-tokenized labels give exact assistant-turn masking instead.
               - padding_free: trl documents it for FlashAttention 2/3 only (varlen kernels, CUDA).
                 transformers 5.25 does accept it with eager/SDPA (it derives a block-diagonal
                 mask from position_ids), but then the 8 records of a batch become one row of
                 ~8x the length: attention FLOPs grow ~8x and eager keeps a (heads x 8S x 8S)
                 probability tensor per layer for the backward (GBs at S ~ 600), so on a CPU it
                 is slower than padding; length grouping is trl's CPU alternative.
               - packing (bfd): forces padding_free (above); wrapped packing cuts records mid-way.
               - use_liger_kernel / Hub kernels: Triton/CUDA kernels, not available on a CPU.
  train-sft    the real stage function (scripts/train_sft.py) with its shipped defaults (the same
               8 records a step, split into micro-batches by micro_batch_size: auto, token-weighted)
  ceiling      bench/ceiling.py: torch.matmul timed in bf16 and fp32 at the model's own shapes
               (hidden, kv, intermediate, vocab from its config; T = the data's mean record length x
               train-sft's micro-batch; the LM head at the label rows only; LoRA's rank-16 matmuls;
               the attention bmm at the token-weighted mean record length), achieved GFLOP/s per
               shape, turned into a tokens/s bound for a LoRA step: 4 x non-embedding linear
               parameters + 6 r (in + out) per LoRA layer + 4 x hidden x vocab per label token
               (frozen tied head: forward + input gradient) + causal attention 6 x hidden x S per
               layer (estimated), each at its shape's measured rate. Elementwise work, the loss,
               the optimizer and overhead are not counted, so the bound is optimistic.

tokens/s = non-padding input tokens the trainer consumed / seconds inside trainer.train()
(train-sft's figure includes its end-of-run checkpoint). The validation loss is measured the same
way for all three after training, outside the timing: fp32, mean cross-entropy over the assistant
tokens of the held-out records (what the model is trained to produce). Prints each run, the
ceiling, the ratios train-sft / plain trl and train-sft / tuned trl (target >= 2x), each trainer's
share of the bf16 bound (train-sft target >= 50%), the eval losses and peak memory, and a final
`JSON ` line with everything.
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

# BENCH_OUT: another folder for the data and run folders (tests use a temporary one)
OUT = Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent / "out") / "train_sft"
ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def eval_loss(model, tokenizer, records: list[dict]) -> float:
    """fp32 mean next-token cross-entropy over assistant tokens of held-out records."""
    import torch

    from trajtune.scripts.train_sft import encode_records
    from trajtune.trainers import PadCollator, label_loss

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


def worker_tuned(args) -> dict:
    """The tuned peer: the best settings trl 1.16 offers on a CPU for the same job (module docstring)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trajtune.scripts.train_sft import encode_records

    tok = AutoTokenizer.from_pretrained(args.model_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # assistant-turn labels from the shared renderer (trl's assistant_only_loss cannot mask this
    # template: no {% generation %} markers, and the fallback tool format is trajtune's own)
    examples, _ = encode_records(tok, read(Path(args.train)), 4096, "drop")
    # micro-batches as train-sft runs them here (2 records x 4 accumulated = the same 8 a step): one
    # batch of 8 without checkpointing needs > 24 GB (all-position logits, eager attention) and was
    # killed by the kernel's OOM killer in the first run of this bench
    micro = min(args.tuned_micro_batch, args.batch_size)
    cfg = SFTConfig(output_dir=str(OUT / "trl-tuned-run"), max_steps=args.steps, per_device_train_batch_size=micro,
                    gradient_accumulation_steps=max(1, args.batch_size // micro), learning_rate=args.lr, bf16=True, use_cpu=True, gradient_checkpointing=False,
                    train_sampling_strategy="group_by_length", max_length=4096,
                    model_init_kwargs={"attn_implementation": "eager"}, report_to="none", save_strategy="no",
                    logging_steps=max(1, args.steps // 5), seed=args.seed, disable_tqdm=True)
    trainer = SFTTrainer(model=args.model_path, args=cfg, train_dataset=Dataset.from_list(examples), processing_class=tok,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    base_dtype = str(next(p for p in trainer.model.parameters() if not p.requires_grad).dtype)
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    peak = peak_rss_mb()
    tokens = int(trainer._total_train_tokens)
    return {"name": "tuned trl SFTTrainer", "steps": trainer.state.global_step, "tokens": tokens, "train_s": round(secs, 1),
            "tokens_per_s": round(tokens / secs, 1), "peak_rss_mb": peak,
            "settings": {"micro_batch": micro, "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "bf16": cfg.bf16, "use_cpu": cfg.use_cpu, "gradient_checkpointing": cfg.gradient_checkpointing,
                         "train_sampling_strategy": cfg.train_sampling_strategy, "max_length": cfg.max_length,
                         "attn_implementation": trainer.model.config._attn_implementation, "padding_free": cfg.padding_free,
                         "loss": "assistant turns (pre-tokenized labels)", "base_dtype": base_dtype},
            "eval_loss": eval_loss(trainer.model, tok, read(Path(args.eval)))}


def worker_ceiling(args) -> dict:
    """The CPU's ceiling at the model's shapes for the data's lengths (bench/ceiling.py)."""
    from transformers import AutoTokenizer

    import ceiling
    from trajtune.scripts.train_sft import encode_records

    tok = AutoTokenizer.from_pretrained(args.model_path)
    ex, _ = encode_records(tok, read(Path(args.train)), 4096, "drop")
    lengths = [len(e["input_ids"]) for e in ex]
    labels = sum(sum(1 for lab in e["labels"][1:] if lab != -100) for e in ex)
    mean = sum(lengths) / len(lengths)
    res = ceiling.measure(args.model_path, tokens=mean * args.micro_batch, label_fraction=labels / sum(lengths),
                          row_length=sum(n * n for n in lengths) / sum(lengths))
    res.update({"mean_record_tokens": round(mean, 1), "micro_batch": args.micro_batch,
                "label_fraction": round(labels / sum(lengths), 4)})
    return res


def worker_ours(args) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.config import build
    from trajtune.scripts.train_sft import Config as TrainSFTConfig, run as train_sft

    run = OUT / "train-sft-run"
    cfg = build(TrainSFTConfig, None, {
        "model": args.model_path, "data": [args.train], "output": str(run), "resume": "never", "allow_unreviewed": True,
        "auto_split": False, "max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
        "save_steps": args.steps, "logging_steps": max(1, args.steps // 5), "seed": args.seed, "max_length": 4096,
        "min_records": 1})
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
    ap.add_argument("--only", choices=["trl", "tuned", "ours", "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--eval", help=argparse.SUPPRESS)
    ap.add_argument("--micro-batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--tuned-micro-batch", type=int, default=2,
                    help="records per forward pass of the tuned trl peer (gradient accumulation makes up the batch; default 2, train-sft's choice here)")
    args = ap.parse_args()
    if args.only:  # worker process
        res = {"trl": worker_trl, "tuned": worker_tuned, "ours": worker_ours, "ceiling": worker_ceiling}[args.only](args)
        print("RESULT " + json.dumps(res))
        return 0

    import ceiling
    from trajtune.models import resolve_model

    model_path = resolve_model(args.model)
    train, ev = make_data(args.count, args.seed)
    n_train, n_eval = len(read(train)), len(read(ev))
    print(f"model {args.model}; {n_train} training trajectories, {n_eval} held out (by prompt); "
          f"{args.steps} steps x {args.batch_size} records; lr {args.lr}", flush=True)

    def worker(which: str, *extra: str) -> dict | None:
        cmd = [sys.executable, __file__, "--only", which, "--model-path", model_path, "--train", str(train), "--eval", str(ev),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
               *extra]
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
        line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
        if res.returncode != 0 or not line:
            why = "killed by signal %d (-9: most likely the OOM killer)" % -res.returncode if res.returncode < 0 else f"exit {res.returncode}"
            print(f"{which} failed ({why}):\n{res.stderr[-3000:]}", file=sys.stderr)
            return None
        return json.loads(line[0][7:])

    results = {}
    for which in ("trl", "tuned", "ours"):
        r = worker(which, *(("--tuned-micro-batch", str(args.tuned_micro_batch)) if which == "tuned" else ()))
        if r is None:
            return 1
        results[which] = r
        print(f"  {r['name']:<22} {r['tokens_per_s']:>8.1f} tok/s  ({r['tokens']} tokens in {r['train_s']} s, {r['steps']} steps)  "
              f"eval loss {r['eval_loss']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    trl_r, tuned, ours = results["trl"], results["tuned"], results["ours"]
    b = ours.get("batch") or {}
    ceil = worker("ceiling", "--micro-batch", str(b.get("micro_batch_size") or 1))
    if ceil is None:
        return 1
    t = tuned["settings"]
    print(f"tuned trl settings: bf16 {t['bf16']} (use_cpu), gradient checkpointing {t['gradient_checkpointing']}, "
          f"{t['train_sampling_strategy']}, max_length {t['max_length']}, attention {t['attn_implementation']}, "
          f"padding_free {t['padding_free']}, loss on {t['loss']}, frozen base {t['base_dtype']}")
    ceiling.print_ceiling(ceil)
    for r in (trl_r, tuned, ours):
        print(f"share of the bf16 bound: {r['name']:<22} {ceiling.share(r['tokens_per_s'], ceil):6.1%} "
              f"(fp32 bound {ceiling.share(r['tokens_per_s'], ceil, 'fp32'):6.1%})")
    print(f"speed ratio train-sft / plain trl: {ours['tokens_per_s'] / trl_r['tokens_per_s']:.2f}x")
    print(f"speed ratio train-sft / tuned trl: {ours['tokens_per_s'] / tuned['tokens_per_s']:.2f}x (target >= 2x)")
    print(f"share of ceiling train-sft: {ceiling.share(ours['tokens_per_s'], ceil):.1%} of the bf16 bound (target >= 50%)")
    print(f"eval loss (fp32, assistant tokens): train-sft {ours['eval_loss']:.4f} vs plain trl {trl_r['eval_loss']:.4f} "
          f"vs tuned trl {tuned['eval_loss']:.4f} "
          f"({'no worse' if ours['eval_loss'] <= min(trl_r['eval_loss'], tuned['eval_loss']) + 1e-4 else 'WORSE'})")
    print(f"peak memory: train-sft {ours['peak_rss_mb']:.0f} MB vs plain trl {trl_r['peak_rss_mb']:.0f} MB vs tuned trl "
          f"{tuned['peak_rss_mb']:.0f} MB ({'no higher' if ours['peak_rss_mb'] <= tuned['peak_rss_mb'] else 'HIGHER'} than tuned; "
          f"train-sft micro-batches of {b.get('micro_batch_size')} x {b.get('gradient_accumulation_steps')}, checkpointing "
          f"{'on' if b.get('gradient_checkpointing') else 'off'}; plain trl checkpointing "
          f"{'on' if trl_r.get('gradient_checkpointing') else 'off'})")
    shares = {k: round(ceiling.share(r["tokens_per_s"], ceil), 4) for k, r in (("trl", trl_r), ("tuned_trl", tuned), ("train_sft", ours))}
    print("JSON " + json.dumps({"trl": trl_r, "tuned_trl": tuned, "train_sft": ours, "ceiling": ceil,
                                "ratios": {"train_sft_over_trl": round(ours["tokens_per_s"] / trl_r["tokens_per_s"], 3),
                                           "train_sft_over_tuned_trl": round(ours["tokens_per_s"] / tuned["tokens_per_s"], 3)},
                                "share_of_bf16_bound": shares}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
