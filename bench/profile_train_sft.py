"""Where a train-sft step's time goes, and what each candidate lever buys (README design notes).

    python bench/profile_train_sft.py                    # every variant, then the profile of the default one
    python bench/profile_train_sft.py --variants sdpa,eager --profile eager
    python bench/profile_train_sft.py --ab eager_mb1_bf16lin_fastdrop_head,blocks_mb1_bf16lin_fastdrop_head --pairs 6

Data: the demo's mix (`trajtune generate trajectories` over the shipped catalog + 1,000 synthetic
tools, the demo's shapes and shares, seed 0) into bench/out/profile_train_sft/; one optimizer step
of 8 records of median length (as a length-grouped batch is), tokenized by train-sft's own
`encode_records`. The model: the default SmolLM2-135M-Instruct with train-sft's LoRA (r 16, alpha
32, every linear layer, no dropout), the loss of train-sft (`label_loss`, logits only at label
positions), bf16 autocast. Each variant runs one warm-up step, then the best of `--reps` steps:

  sdpa            the model's default attention (SDPA's CPU kernels), micro-batches of 2 (the old default)
  eager           eager attention (two batched matmuls and a softmax), micro-batches of 2 (now the default)
  eager_mb1/mb4   the same with micro-batches of 1 / 4 records
  eager_bf16base  frozen base weights stored in bf16 (no per-forward weight casts under autocast), LoRA in fp32
  eager_bf16lin   only the frozen linear layers' weights stored in bf16 (what autocast casts them to anyway:
                  the same numbers), embeddings, norms and LoRA in fp32 (what train-sft and train-dpo do now)
  sdpa_mb1_bf16lin / eager_mb1_bf16lin   one record per forward (no padding, so SDPA needs no mask and
                  can take its causal kernel), frozen linears in bf16
  eager_mb1_bf16lin_drop / _fastdrop   LoRA dropout 0.05 (train-sft's default; the others run without):
                  peft's nn.Dropout / trajtune's FastDropout (the same dropout, a cheaper mask)
  eager_mb1_bf16lin_fastdrop_head   the same with the output head (tied to the embeddings) given its own
                  bf16 copy, the cast autocast makes of it on every forward (train-sft does this now)
  blocks_mb1_bf16lin_fastdrop_head  the same with trajtune's causal-blocks attention (trajtune/attention.py:
                  eager's numbers, queries in row blocks that score only the keys they may see)
  eager_pack2     2 records packed into one row (position ids restart, block-diagonal causal mask)
  fp32            no autocast, eager (the fp32 reference)
  eager_compile   eager, the decoder stack under torch.compile (inductor, dynamic shapes); its compile
                  time is the warm-up step's, printed apart

The profile (torch.profiler, one step) groups self CPU time into base GEMMs, LoRA GEMMs (rank-16
shapes), attention matmuls, softmax, elementwise, dtype casts and copies, the loss head and the rest.
The profiler adds overhead, so the shares, not its total, are what to read. Measure alone: other
processes on the 2 cores distort every figure (OpenMP threads busy-wait).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "profile_train_sft"
ROOT = Path(__file__).resolve().parents[1]
SHAPES = "single=0.1,choose=0.18,parallel=0.2,parallel_multi=0.18,multi_step=0.05,irrelevance=0.18,missing_info=0.05,typed=0.06"
VARIANTS = {
    "sdpa": dict(attn="sdpa", micro=2),
    "eager": dict(attn="eager", micro=2),
    "eager_mb1": dict(attn="eager", micro=1),
    "eager_mb4": dict(attn="eager", micro=4),
    "eager_bf16base": dict(attn="eager", micro=2, bf16_base=True),
    "eager_bf16lin": dict(attn="eager", micro=2, bf16_linear=True),
    "sdpa_mb1_bf16lin": dict(attn="sdpa", micro=1, bf16_linear=True),
    "eager_mb1_bf16lin": dict(attn="eager", micro=1, bf16_linear=True),
    "eager_mb1_bf16lin_drop": dict(attn="eager", micro=1, bf16_linear=True, dropout=0.05, torch_dropout=True),
    "eager_mb1_bf16lin_fastdrop": dict(attn="eager", micro=1, bf16_linear=True, dropout=0.05),
    "eager_mb1_bf16lin_fastdrop_head": dict(attn="eager", micro=1, bf16_linear=True, dropout=0.05, head=True),
    "blocks_mb1_bf16lin_fastdrop_head": dict(attn="trajtune_blocks", micro=1, bf16_linear=True, dropout=0.05, head=True),
    "eager_pack2": dict(attn="eager", micro=2, pack=True),
    "fp32": dict(attn="eager", micro=2, autocast=False),
    "eager_compile": dict(attn="eager", micro=2, compile=True),
}


def make_data() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    tools, data = OUT / "synth_tools.json", OUT / "train.jsonl"
    tt = [sys.executable, "-m", "trajtune.cli.app"]
    if not tools.exists():
        subprocess.run(tt + ["generate", "tools", "--synthesize", "1000", "--seed", "0", "-o", str(tools)], check=True, capture_output=True)
    if not data.exists():
        subprocess.run(tt + ["generate", "trajectories", "--catalog", str(ROOT / "data" / "tools"), "--catalog", str(tools),
                             "--template-share", "0.2", "--shapes", SHAPES, "--count", "300", "--no-call-share", "0.2",
                             "--seed", "0", "-o", str(data)], check=True, capture_output=True)
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to time")
    ap.add_argument("--profile", default="eager", help="variant to profile (empty: none)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--model", default="default")
    ap.add_argument("--detail", type=int, default=0, help="also list the N costliest ops by input shapes, with call counts")
    ap.add_argument("--ab", default="", help="A,B: load both variants, then time --pairs steps of each in turn (A B A B ...) "
                    "and print each pair's ratio and the median: the machine's drift hits both alike")
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.dropout import FastDropout
    from trajtune.models import resolve_model
    from trajtune.scripts.train_sft import encode_records
    from trajtune.trainers import PadCollator, label_loss
    from trajtune.attention import register
    from trajtune.training import attach_lora, frozen_linears_to_bf16, head_to_bf16

    register()

    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    records = [json.loads(line) for line in make_data().read_text().splitlines() if line.strip()]
    ex, _ = encode_records(tok, records, 768, "drop")
    ex.sort(key=lambda e: len(e["input_ids"]))
    mid = len(ex) // 2
    step = ex[mid - 4: mid + 4]
    tokens = sum(len(e["input_ids"]) for e in step)
    print(f"one step: 8 records, {tokens} tokens (lengths {[len(e['input_ids']) for e in step]}), "
          f"{torch.get_num_threads()} threads", flush=True)

    def load(v: dict):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=v["attn"])
        m, _ = attach_lora(m, r=16, alpha=32, dropout=v.get("dropout", 0.0), target_modules="all-linear", fallback="none")
        if v.get("torch_dropout"):  # peft's own nn.Dropout instead of trajtune's FastDropout
            for mod in m.modules():
                for name, d in list(getattr(mod, "lora_dropout", {}).items()):
                    if isinstance(d, FastDropout):
                        mod.lora_dropout[name] = torch.nn.Dropout(d.p)
        if v.get("bf16_base"):
            for p in m.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
        if v.get("bf16_linear"):
            frozen_linears_to_bf16(m)
        if v.get("head"):
            head_to_bf16(m)
        m = m.train()
        if v.get("compile"):
            inner = m.base_model.model  # PeftModel -> LoraModel -> the CausalLM: compile its decoder stack
            inner.model = torch.compile(inner.model, dynamic=True)
        return m

    def packed_loss(model, feats):
        ids = torch.tensor(sum((f["input_ids"] for f in feats), []))[None]
        labels = torch.tensor(sum(([-100] + f["labels"][1:] for f in feats), []))[None]
        pos = torch.cat([torch.arange(len(f["input_ids"])) for f in feats])[None]
        keep = labels.new_zeros(labels.shape, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100
        out = model(input_ids=ids, position_ids=pos, logits_to_keep=keep, use_cache=False)
        return F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), labels[:, 1:][keep[:, :-1]])

    def one_step(model, v: dict) -> None:
        collate = PadCollator(tok.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.get("autocast", True)):
            for i in range(0, 8, v["micro"]):
                feats = step[i:i + v["micro"]]
                loss = packed_loss(model, feats) if v.get("pack") else label_loss(model, collate(feats), True)[0]
                loss.backward()

    if args.ab:
        a, b = args.ab.split(",")
        models = {n: load(VARIANTS[n]) for n in (a, b)}
        for n in (a, b):
            one_step(models[n], VARIANTS[n])  # warm-up
        ratios, steps = [], {a: [], b: []}
        for i in range(args.pairs):
            for n in ((a, b) if i % 2 == 0 else (b, a)):
                t = time.perf_counter()
                one_step(models[n], VARIANTS[n])
                steps[n].append(time.perf_counter() - t)
            ratios.append(steps[a][-1] / steps[b][-1])
            print(f"  pair {i + 1}: {a} {steps[a][-1]:6.2f} s, {b} {steps[b][-1]:6.2f} s: {ratios[-1]:5.3f}x", flush=True)
        med = sorted(ratios)[len(ratios) // 2] if len(ratios) % 2 else sum(sorted(ratios)[len(ratios) // 2 - 1: len(ratios) // 2 + 1]) / 2
        print(f"  {b} is {med:.3f}x as fast as {a} (median of {len(ratios)} pairs; mean steps {sum(steps[a]) / len(steps[a]):.2f} s "
              f"vs {sum(steps[b]) / len(steps[b]):.2f} s)")
        print("JSON " + json.dumps({"tokens": tokens, "ab": [a, b], "steps": steps, "ratios": ratios, "median": med}))
        return 0
    names = [n for n in args.variants.split(",") if n]
    results = {}
    for name in names:
        v = VARIANTS[name]
        model = load(v)
        t0 = time.perf_counter()
        one_step(model, v)  # warm-up (a compiled variant compiles here)
        print(f"  {name:<15} warm-up step {time.perf_counter() - t0:6.1f} s", flush=True)
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            one_step(model, v)
            times.append(time.perf_counter() - t)
        results[name] = min(times)
        print(f"  {name:<15} {min(times):6.2f} s a step  {tokens / min(times):7.1f} tok/s  (steps: {[round(x, 2) for x in times]})", flush=True)
        if name == args.profile:
            profile(model, v, one_step, args.detail)
        del model
    if "sdpa" in results:
        for name, secs in results.items():
            print(f"  {name:<15} {results['sdpa'] / secs:5.2f}x the sdpa step")
    print("JSON " + json.dumps({"tokens": tokens, "step_s": results}))
    return 0


def profile(model, v, one_step, detail: int = 0) -> None:
    from torch.profiler import ProfilerActivity, profile as prof_ctx

    with prof_ctx(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        one_step(model, v)
    report(prof, detail)


def report(prof, detail: int = 0, what: str = "one step") -> dict:
    """Print (and return) a profile's self CPU time by group: the README's profile tables."""
    groups: dict[str, float] = {}
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        if e.self_cpu_time_total <= 0 or not e.key.startswith("aten::"):
            continue
        op, shapes = e.key[6:], [s for s in (e.input_shapes or []) if s]
        if op == "mm":
            g = "LoRA GEMMs (rank-16 shapes)" if any(16 in s for s in shapes) else "base GEMMs (frozen weights, LM head)"
        elif op in ("bmm", "baddbmm") or op.startswith("_scaled_dot_product"):
            g = "attention (matmuls / SDPA kernel)"
        elif op in ("random_", "bitwise_and", "bitwise_and_", "bitwise_right_shift_", "bitwise_not_", "sub_", "bernoulli_",
                    "native_dropout", "native_dropout_backward", "dropout"):
            g = "LoRA dropout (mask drawn and applied)"
        elif "softmax" in op or op == "logsumexp":
            g = "softmax, log-softmax (attention, loss)"
        elif op in ("copy_", "_to_copy", "to", "clone", "contiguous"):
            g = "dtype casts and copies"
        elif op in ("mul", "add", "add_", "sub", "div", "neg", "pow", "rsqrt", "mean", "silu", "silu_backward", "sum", "cat",
                    "where", "fill_", "zero_", "index", "masked_fill", "nll_loss", "nll_loss_backward", "mul_", "cos", "sin"):
            g = "elementwise, reductions, fills"
        else:
            g = "other (allocation, views, indexing)"
        groups[g] = groups.get(g, 0.0) + e.self_cpu_time_total
        rows.append((e.self_cpu_time_total, e.count, op, shapes))
    total = sum(groups.values())
    print(f"  profile of {what} ({total / 1e6:.1f} s under the profiler), self CPU time:")
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"    {g:<40} {t / 1e6:6.2f} s  {100 * t / total:5.1f}%")
    if detail:
        print(f"  the {detail} costliest ops by input shapes (self CPU time, calls):")
        for t, n, op, shapes in sorted(rows, key=lambda r: -r[0])[:detail]:
            print(f"    {t / 1e6:6.3f} s {100 * t / total:5.1f}% {n:6d}x  {op:<24} {shapes}")
    return {g: round(100 * t / total, 1) for g, t in groups.items()}


if __name__ == "__main__":
    raise SystemExit(main())
