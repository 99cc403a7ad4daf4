"""Speed of `train-dpo` beside two trl DPOTrainer peers (plain defaults and tuned) and the CPU's
own ceiling, all measured in one run.

    python bench/bench_train_dpo.py                  # 4 steps x 2 pairs each (small: a shared machine)
    python bench/bench_train_dpo.py --steps 20 --batch-size 4 --threads 1
    python bench/bench_train_dpo.py --model PATH --steps 2 --eval-pairs 4   # smoke run on a tiny local model

Data: `trajtune generate preferences` (offline, seeded) into bench/out/train_dpo/: exactly
steps x batch training pairs (one epoch, so all trainers see the same pairs once and the
reference pass covers only what is trained on) plus held-out pairs split by prompt. All three
trainers get the same model, pairs, optimizer steps, batch (--batch-size pairs a step), learning
rate, beta and LoRA (r 16, alpha 32, dropout 0, all linear layers). The plain peer is slow on a CPU
(a checkpointed forward pass plus a reference forward every step), so keep --steps small on a
shared machine. Each runs in a fresh process, so peak RSS is its own, and so does the ceiling
measurement (after the trainers):

  plain trl   DPOTrainer(DPOConfig(bf16=False, use_cpu=True) + defaults) on the same pairs rendered
              to text by trajtune.chat (trl's defaults: gradient checkpointing on, reference
              log-probs recomputed every step with the adapter disabled, LM head on every position)
  tuned trl   the best settings trl 1.16 offers for this job on a CPU, on the same text pairs:
              DPOConfig(bf16=True, use_cpu=True) (bf16 autocast on the CPU, accepted by
              transformers' TrainingArguments with use_cpu), gradient_checkpointing=False,
              precompute_ref_log_probs=True (one reference pass over the pairs, in the trainer's
              construction, which is timed as for train-dpo), max_length 4096 (no truncation, like
              train-dpo), model_init_kwargs attn_implementation="eager" (train-dpo's CPU attention).
              Loss on the completions only is trl's DPO default (completion_mask).
              Not used, and why:
              - padding_free: trl 1.16's DPOTrainer disables it ("temporarily unavailable after a
                refactor": it warns and falls back to padding), and trl documents it for
                FlashAttention 2/3 only (CUDA varlen kernels).
              - train_sampling_strategy="group_by_length": transformers' LengthGroupedSampler reads
                an input_ids column, which trl's DPO dataset (prompt/chosen/rejected ids) has not;
                with one epoch of a few pairs a step it would buy little anyway.
              - use_liger_kernel / Hub kernels: Triton/CUDA kernels, not available on a CPU.
              - trl has no switch for the LM head at completion positions only nor for a shared
                prompt forward; those are train-dpo's own.
  train-dpo   the real stage function (scripts/train_dpo.py) with its shipped defaults (reference
              log-probs once, no gradient checkpointing, bf16 autocast on CPUs with native bf16,
              LM head on completion positions only, the shared prompt computed once per pair)
  ceiling     bench/ceiling.py: torch.matmul timed in bf16 and fp32 at the model's own shapes
              (hidden, kv, intermediate, vocab from its config; T = the mean chosen/rejected row
              length x 2 x the pairs of a step, train-dpo's forward; the LM head at the completion
              rows only; LoRA's rank-16 matmuls; the attention bmm at the token-weighted mean row
              length), achieved GFLOP/s per shape, turned into a tokens/s bound per counted input
              token: the policy's LoRA step (4 x non-embedding linear parameters + 6 r (in + out)
              per LoRA layer + 4 x hidden x vocab per completion token + causal attention 6 x
              hidden x S per layer, estimated) plus the reference forward (2 x parameters,
              2 x hidden x vocab per completion token, attention 2 x hidden x S per layer), each at
              its shape's measured rate. Elementwise work, the loss, the optimizer and overhead
              are not counted, so the bound is optimistic. train-dpo computes each pair's shared
              prompt once but counts it for both rows, so its share can exceed what computing
              every counted token would allow.

tokens/s = input tokens (chosen + rejected, attention mask, trl's own count) / seconds. For the
plain peer: seconds inside trainer.train(). For the tuned peer and train-dpo: seconds inside
trainer.train() PLUS the trainer construction that runs the one reference pass, so precomputing
is not a free lunch. Quality is measured the same way for all three after training, outside the
timing, in fp32 on the held-out pairs: DPO loss, reward accuracy and margin (reference = the model
with the adapter off). Prints each run, the ceiling, the ratios train-dpo / plain trl and
train-dpo / tuned trl (target >= 2x), each trainer's share of the bf16 bound, the held-out metrics
and peak memory, and a final `JSON ` line with everything.
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
OUT = Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent / "out") / "train_dpo"
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

    from trajtune.scripts.train_dpo import encode_pairs
    from trajtune.trainers import PairCollator

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


def text_pairs(tok, train: str) -> dict:
    """The training pairs as trl's prompt/chosen/rejected text, exactly as trajtune renders them."""
    from trajtune.chat import render, render_prompt

    rows = {"prompt": [], "chosen": [], "rejected": []}
    for r in read(Path(train)):
        prompt = render_prompt(tok, r["prompt"], r.get("tools"))
        rows["prompt"].append(prompt)
        for side in ("chosen", "rejected"):  # the completion text exactly as trajtune renders it (trl adds EOS)
            full = render(tok, r["prompt"] + r[side], r.get("tools"))
            rows[side].append(full[len(prompt):].rstrip("\n").removesuffix(tok.eos_token))
    return rows


def worker_trl(args) -> dict:
    """The peer: a plain trl script with defaults (bf16 off so it runs on the CPU)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(args.model_path)
    rows = text_pairs(tok, args.train)
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


def worker_tuned(args) -> dict:
    """The tuned peer: the best settings trl 1.16 offers on a CPU for the same job (module docstring)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(args.model_path)
    rows = text_pairs(tok, args.train)
    cfg = DPOConfig(output_dir=str(OUT / "trl-tuned-run"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                    learning_rate=args.lr, beta=args.beta, bf16=True, use_cpu=True, gradient_checkpointing=False,
                    precompute_ref_log_probs=True, max_length=4096, model_init_kwargs={"attn_implementation": "eager"},
                    report_to="none", save_strategy="no", logging_steps=max(1, args.steps // 4), seed=args.seed,
                    disable_tqdm=True)
    t0 = time.perf_counter()  # the construction runs the reference pass: timed, as for train-dpo
    trainer = DPOTrainer(model=args.model_path, args=cfg, train_dataset=Dataset.from_dict(rows), processing_class=tok,
                         peft_config=LoraConfig(**LORA))
    ref_s = time.perf_counter() - t0
    base_dtype = str(next(p for p in trainer.model.parameters() if not p.requires_grad).dtype)
    t1 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t1 + ref_s
    peak = peak_rss_mb()
    tokens = int(trainer._total_train_tokens)
    return {"name": "tuned trl DPOTrainer", "steps": trainer.state.global_step, "tokens": tokens, "seconds": round(secs, 1),
            "reference_pass_s": round(ref_s, 1), "tokens_per_s": round(tokens / secs, 1), "peak_rss_mb": peak,
            "settings": {"bf16": cfg.bf16, "use_cpu": cfg.use_cpu, "gradient_checkpointing": cfg.gradient_checkpointing,
                         "precompute_ref_log_probs": cfg.precompute_ref_log_probs, "max_length": cfg.max_length,
                         "attn_implementation": trainer.model.config._attn_implementation,
                         "padding_free": bool(trainer.padding_free), "base_dtype": base_dtype},
            **heldout_metrics(trainer.model, tok, read(Path(args.eval)), args.beta)}


def worker_ceiling(args) -> dict:
    """The CPU's ceiling at the model's shapes for the pairs' lengths (bench/ceiling.py)."""
    from transformers import AutoTokenizer

    import ceiling
    from trajtune.scripts.train_dpo import encode_pairs

    tok = AutoTokenizer.from_pretrained(args.model_path)
    pairs, _ = encode_pairs(tok, read(Path(args.train)), 4096, "drop")
    lengths = [len(p[f"{side}_ids"]) for p in pairs for side in ("chosen", "rejected")]
    completion = sum(sum(p[f"{side}_mask"]) for p in pairs for side in ("chosen", "rejected"))
    mean = sum(lengths) / len(lengths)
    res = ceiling.measure(args.model_path, tokens=mean * 2 * args.batch_size, label_fraction=completion / sum(lengths),
                          row_length=sum(n * n for n in lengths) / sum(lengths), reference_forward=True)
    res.update({"mean_row_tokens": round(mean, 1), "rows_per_forward": 2 * args.batch_size,
                "completion_fraction": round(completion / sum(lengths), 4)})
    return res


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
    ap.add_argument("--only", choices=["trl", "tuned", "ours", "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--eval", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # worker process
        import warnings

        warnings.filterwarnings("ignore")
        res = {"trl": worker_trl, "tuned": worker_tuned, "ours": worker_ours, "ceiling": worker_ceiling}[args.only](args)
        print("RESULT " + json.dumps(res))
        return 0

    import ceiling
    from trajtune.models import resolve_model

    model_path = resolve_model(args.model)
    train_p, eval_p = make_data(args.steps * args.batch_size, args.eval_pairs, args.seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = {}
    for which in ("trl", "tuned", "ours", "ceiling"):
        cmd = [sys.executable, __file__, "--only", which, "--model-path", model_path, "--train", str(train_p),
               "--eval", str(eval_p), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--beta", str(args.beta), "--seed", str(args.seed)]
        print(f"running {which} ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            sys.exit(f"{which} failed:\n{res.stderr[-3000:]}")
        results[which] = json.loads(line[7:])
    peer, tuned, ours, ceil = results["trl"], results["tuned"], results["ours"], results["ceiling"]
    print(f"model {args.model}; {args.steps} steps x {args.batch_size} pairs ({args.steps * args.batch_size} training pairs, "
          f"one epoch); {args.eval_pairs} held-out pairs; threads {args.threads or 'default'}")
    for r in (peer, tuned, ours):
        print(json.dumps(r))
    t = tuned["settings"]
    print(f"tuned trl settings: bf16 {t['bf16']} (use_cpu), gradient checkpointing {t['gradient_checkpointing']}, "
          f"precompute_ref_log_probs {t['precompute_ref_log_probs']}, max_length {t['max_length']}, attention "
          f"{t['attn_implementation']}, padding_free {t['padding_free']}, frozen base {t['base_dtype']}")
    ceiling.print_ceiling(ceil)
    for r in (peer, tuned, ours):
        print(f"share of the bf16 bound: {r['name']:<22} {ceiling.share(r['tokens_per_s'], ceil):6.1%} "
              f"(fp32 bound {ceiling.share(r['tokens_per_s'], ceil, 'fp32'):6.1%})")
    print(f"tokens/s: train-dpo {ours['tokens_per_s']} vs plain DPOTrainer {peer['tokens_per_s']} -> "
          f"{ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x")
    print(f"tokens/s: train-dpo {ours['tokens_per_s']} vs tuned DPOTrainer {tuned['tokens_per_s']} -> "
          f"{ours['tokens_per_s'] / tuned['tokens_per_s']:.2f}x (target >= 2x)")
    print(f"share of ceiling train-dpo: {ceiling.share(ours['tokens_per_s'], ceil):.1%} of the bf16 bound")
    print(f"held-out DPO loss: train-dpo {ours['dpo_loss']} vs plain {peer['dpo_loss']} vs tuned {tuned['dpo_loss']}; "
          f"reward accuracy {ours['reward_accuracy']} vs {peer['reward_accuracy']} vs {tuned['reward_accuracy']}; "
          f"margin {ours['reward_margin']} vs {peer['reward_margin']} vs {tuned['reward_margin']}")
    print(f"peak RSS MB: train-dpo {ours['peak_rss_mb']} vs plain {peer['peak_rss_mb']} vs tuned {tuned['peak_rss_mb']}")
    shares = {k: round(ceiling.share(r["tokens_per_s"], ceil), 4) for k, r in (("trl", peer), ("tuned_trl", tuned), ("train_dpo", ours))}
    print("JSON " + json.dumps({"trl": peer, "tuned_trl": tuned, "train_dpo": ours, "ceiling": ceil,
                                "ratios": {"train_dpo_over_trl": round(ours["tokens_per_s"] / peer["tokens_per_s"], 3),
                                           "train_dpo_over_tuned_trl": round(ours["tokens_per_s"] / tuned["tokens_per_s"], 3)},
                                "share_of_bf16_bound": shares}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
