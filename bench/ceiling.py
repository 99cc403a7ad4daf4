"""The CPU's own ceiling for a LoRA training step, measured in the benchmark's run (shared by
bench_train_sft.py and bench_train_dpo.py; run it in a fresh process, with the trainers' threads).

1. GEMM throughput: ``torch.matmul`` timed in bf16 and fp32 at the model's own matrix shapes,
   T = tokens of one micro-batch (the data's mean row length x the micro-batch) rows:

     (T x hidden) @ (hidden x hidden)    q, o projections            (and their input gradients)
     (T x hidden) @ (hidden x kv)        k, v projections forward
     (T x kv)     @ (kv x hidden)        k, v input gradients
     (T x hidden) @ (hidden x inter)     gate, up forward; down's input gradient
     (T x inter)  @ (inter x hidden)     down forward; gate's and up's input gradients
     (L x hidden) @ (hidden x vocab)     LM head forward at the L label rows of the micro-batch
     (L x vocab)  @ (vocab x hidden)     LM head input gradient
     (T x hidden) @ (hidden x r), (T x r) @ (r x hidden)   LoRA's thin matmuls (every LoRA FLOP at their mean rate)
     (heads x S x head_dim) @ (heads x head_dim x S)      attention scores of one row of S tokens

   achieved GFLOP/s = 2 m k n / best-of-repeats seconds.

2. The tokens/s bound of one LoRA step: the time per trained token is the sum over the step's
   matmuls of (FLOPs per token of that matmul / the GFLOP/s measured at its shape):

     frozen linear layers   4 x (non-embedding linear parameters): forward 2 P + input gradient 2 P
                            (the frozen weights need no weight gradient)
     LoRA                   6 r (in + out) per adapted linear (forward, input and weight gradients)
     LM head                4 x hidden x vocab per *label* token (the head is the frozen tied embedding:
                            forward + input gradient, no weight gradient; the naive 6 x would lower the bound)
     attention (estimated)  causal only, 6 x hidden x S per layer (QK^T and PV forward 2 h S, backward 2x),
                            S = the token-weighted mean row length, at the measured bmm rate

   DPO adds the reference: one more forward (2 P, 2 h V per completion token, 2 h S attention).
   Not counted: norms, activations, softmax, RoPE, the loss, the optimizer, data collation and
   framework overhead, so the bound is optimistic: no real trainer reaches 100%.
"""
from __future__ import annotations

import json
import time


def linear_shapes(cfg) -> list[tuple[str, int, int]]:
    """(name, in, out) of one decoder layer's linear layers (Llama-style attention + gated MLP)."""
    h = cfg.hidden_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    kv = (getattr(cfg, "num_key_value_heads", None) or heads) * head_dim
    inter = cfg.intermediate_size
    return [("q", h, heads * head_dim), ("k", h, kv), ("v", h, kv), ("o", heads * head_dim, h),
            ("gate", h, inter), ("up", h, inter), ("down", inter, h)]


def gemm_gflops(m: int, k: int, n: int, dtype, min_s: float = 0.15, max_reps: int = 50, batch: int = 0) -> float:
    """Best achieved GFLOP/s of (m x k) @ (k x n) (batched over ``batch`` when > 0)."""
    import torch

    shape_a, shape_b = ((batch, m, k), (batch, k, n)) if batch else ((m, k), (k, n))
    a = torch.randn(*shape_a, dtype=torch.float32).to(dtype)
    b = torch.randn(*shape_b, dtype=torch.float32).to(dtype)
    torch.matmul(a, b)  # warm-up (also allocates the output once)
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or (spent < min_s and reps < max_reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return 2.0 * m * k * n * max(batch, 1) / best / 1e9


def measure(model_path: str, *, tokens: int, label_fraction: float, row_length: float, lora_r: int = 16,
            reference_forward: bool = False) -> dict:
    """GEMM GFLOP/s at the model's shapes and the LoRA-step tokens/s bound, for bf16 and fp32.

    tokens: rows of one micro-batch (T); label_fraction: share of trained tokens that carry a label
    (the LM head runs only there); row_length: token-weighted mean row length S (attention);
    reference_forward: DPO, one frozen reference forward per token on top of the policy step."""
    import torch
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_path)
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    h, vocab, layers = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    linears = linear_shapes(cfg)
    T = max(1, int(round(tokens)))
    L = max(1, int(round(T * label_fraction)))
    S = max(1, int(round(row_length)))
    P = layers * sum(i * o for _, i, o in linears)
    lora = layers * sum(6 * lora_r * (i + o) for _, i, o in linears)
    head = 4 * h * vocab * label_fraction
    attention = layers * 6 * h * S
    if reference_forward:  # a frozen forward: no gradients, no LoRA weight gradient (r is tiny, ignored)
        P_ref, head_ref, attention_ref = 2 * P, 2 * h * vocab * label_fraction, layers * 2 * h * S
    else:
        P_ref = head_ref = attention_ref = 0

    # the distinct GEMM shapes of the step: name -> (m, k, n, batch)
    shapes: dict[str, tuple[int, int, int, int]] = {}
    for _, i, o in linears:
        shapes.setdefault(f"{T}x{i} @ {i}x{o}", (T, i, o, 0))
        shapes.setdefault(f"{T}x{o} @ {o}x{i}", (T, o, i, 0))
    shapes[f"{L}x{h} @ {h}x{vocab} (head)"] = (L, h, vocab, 0)
    shapes[f"{L}x{vocab} @ {vocab}x{h} (head grad)"] = (L, vocab, h, 0)
    shapes[f"{T}x{h} @ {h}x{lora_r} (LoRA A)"] = (T, h, lora_r, 0)
    shapes[f"{T}x{lora_r} @ {lora_r}x{h} (LoRA B)"] = (T, lora_r, h, 0)
    shapes[f"{heads}x{S}x{head_dim} @ {heads}x{head_dim}x{S} (attention)"] = (S, head_dim, S, heads)

    out: dict = {"threads": torch.get_num_threads(), "tokens_per_micro_batch": T, "label_rows": L, "row_length": S,
                 "flops_per_token": {"frozen_linear": 4 * P + P_ref, "lora": lora, "lm_head": round(head + head_ref),
                                     "attention_estimate": attention + attention_ref},
                 "shapes": {}, "bound_tokens_per_s": {}}
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        rates = {name: gemm_gflops(m, k, n, dtype, batch=b) for name, (m, k, n, b) in shapes.items()}
        for name, r in rates.items():
            out["shapes"].setdefault(name, {})[dtype_name] = round(r, 1)
        # seconds per token: each linear's forward at (in -> out) and its input gradient at (out -> in)
        secs = 0.0
        for _, i, o in linears:
            flops = layers * 2 * i * o
            fwd_mult = 2 if reference_forward else 1  # the reference forward runs the same (in -> out) shape
            secs += fwd_mult * flops / (rates[f"{T}x{i} @ {i}x{o}"] * 1e9) + flops / (rates[f"{T}x{o} @ {o}x{i}"] * 1e9)
        lora_rate = (rates[f"{T}x{h} @ {h}x{lora_r} (LoRA A)"] + rates[f"{T}x{lora_r} @ {lora_r}x{h} (LoRA B)"]) / 2
        secs += lora / (lora_rate * 1e9)
        hv = 2 * h * vocab * label_fraction
        secs += (hv * (2 if reference_forward else 1)) / (rates[f"{L}x{h} @ {h}x{vocab} (head)"] * 1e9)
        secs += hv / (rates[f"{L}x{vocab} @ {vocab}x{h} (head grad)"] * 1e9)
        secs += (attention + attention_ref) / (rates[f"{heads}x{S}x{head_dim} @ {heads}x{head_dim}x{S} (attention)"] * 1e9)
        out["bound_tokens_per_s"][dtype_name] = round(1.0 / secs, 1)
    return out


def print_ceiling(c: dict) -> None:
    f = c["flops_per_token"]
    print(f"ceiling (torch.matmul at the model's shapes, {c['threads']} thread(s); micro-batch of {c['tokens_per_micro_batch']} "
          f"tokens, {c['label_rows']} label rows, rows of ~{c['row_length']} tokens):")
    for name, r in c["shapes"].items():
        print(f"  {name:<44} bf16 {r['bf16']:>8.1f} GFLOP/s   fp32 {r['fp32']:>8.1f} GFLOP/s")
    print(f"  FLOPs per counted token (DPO: with the reference forward): frozen linears {f['frozen_linear'] / 1e6:.1f}M, LoRA {f['lora'] / 1e6:.1f}M, "
          f"LM head {f['lm_head'] / 1e6:.1f}M (label tokens only), attention {f['attention_estimate'] / 1e6:.1f}M (estimated)")
    b = c["bound_tokens_per_s"]
    print(f"ceiling bound for a LoRA step: bf16 {b['bf16']:.1f} tok/s, fp32 {b['fp32']:.1f} tok/s")


def share(tokens_per_s: float, c: dict, dtype: str = "bf16") -> float:
    return tokens_per_s / c["bound_tokens_per_s"][dtype]


if __name__ == "__main__":  # quick look: python bench/ceiling.py MODEL TOKENS LABEL_FRACTION ROW_LENGTH
    import sys

    res = measure(sys.argv[1], tokens=float(sys.argv[2]), label_fraction=float(sys.argv[3]), row_length=float(sys.argv[4]))
    print_ceiling(res)
    print(json.dumps(res))
