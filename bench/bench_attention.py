"""trajtune's causal-blocks attention against transformers' eager attention (the peer it replaces
on a CPU), one decoder layer's attention core, forward + backward, the default model's shapes.

    python bench/bench_attention.py                   # sequence lengths 300, 538 (the demo's median), 1024
    python bench/bench_attention.py --lengths 538 --calls 40

Inputs as in a train-sft step of SmolLM2-135M under bf16 autocast: queries and keys fp32 (after
the rotary embedding), values bf16 (a linear's output), 9 query heads over 3 key/value heads,
head size 64, one record (plain causal: transformers passes eager a [T, T] additive mask and
trajtune's attention no mask). The two run in turn, call by call; the figure is the mean of the
middle half of the calls. Each length first checks that the outputs are equal bit for bit.
Measure alone: other processes on the 2 cores distort every figure.

At glibc's default malloc settings each call's fresh T x T buffers are mapped and faulted in
anew, which a long training step's allocator state avoids; for that steady state run it with
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
(README benchmark table: both figures).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="300,538,1024")
    ap.add_argument("--calls", type=int, default=24)
    ap.add_argument("--block-rows", default="", help="comma-separated BLOCK_ROWS to time beside the default")
    args = ap.parse_args()

    import torch
    from transformers.models.llama.modeling_llama import eager_attention_forward

    import trajtune.attention as attention

    class Layer:
        num_key_value_groups, training, is_causal = 3, True, True

    default_rows = attention.BLOCK_ROWS
    variants = ["eager", f"blocks{default_rows}"] + [f"blocks{int(r)}" for r in args.block_rows.split(",") if r]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; default BLOCK_ROWS {default_rows}")
    for t in (int(x) for x in args.lengths.split(",")):
        torch.manual_seed(0)
        q0, k0 = torch.randn(1, 9, t, 64), torch.randn(1, 3, t, 64)
        v0, g = torch.randn(1, 3, t, 64).to(torch.bfloat16), torch.randn(1, t, 9, 64).to(torch.bfloat16)
        additive = torch.zeros(1, 1, t, t).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)

        def run(name: str):
            q, k, v = (x.clone().requires_grad_() for x in (q0, k0, v0))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if name == "eager":
                    out = eager_attention_forward(Layer(), q, k, v, additive, 0.125)[0]
                else:
                    attention.BLOCK_ROWS = int(name[len("blocks"):])
                    out = attention.causal_blocks_attention(Layer(), q, k, v, None, 0.125)[0]
            out.backward(g)
            return out.detach()

        ref = run("eager")
        same = {n: torch.equal(ref, run(n)) for n in variants[1:]}
        times: dict[str, list[float]] = {n: [] for n in variants}
        for _ in range(args.calls):
            for n in variants:
                t0 = time.perf_counter()
                run(n)
                times[n].append(time.perf_counter() - t0)
        mid = {n: sorted(ts)[len(ts) // 4: len(ts) - len(ts) // 4] for n, ts in times.items()}
        ms = {n: 1000 * sum(ts) / len(ts) for n, ts in mid.items()}
        for n in variants:
            blocks = "" if n == "eager" else f" ({max(1, round(t / int(n[6:])))} blocks; output equal to eager: {same[n]})"
            print(f"T={t:5d} {n:<10} {ms[n]:8.2f} ms forward+backward  {ms['eager'] / ms[n]:5.2f}x eager{blocks}")
        attention.BLOCK_ROWS = default_rows
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
