"""LoRA input dropout on a CPU: trajtune's FastDropout beside torch's dropout (what peft uses) and
beside the same four-lane mask applied the obvious way (bool comparison + torch.where), in one run.

    python bench/bench_dropout.py                 # 400 alternating forward+backward calls per shape
    python bench/bench_dropout.py --calls 100 --p 0.1

Shapes: one record of ~574 tokens at the default model's LoRA input widths (576: q, k, v, o, gate,
up; 1536: down). Each call is a forward and a backward through one dropout at p (default 0.05,
train-sft's default). The three run alternately, call by call, so a slow moment of the machine
hits all of them; the best and the median of each are printed, with the ratios of the best.
Measure alone: another process on the two cores distorts every figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from trajtune.dropout import FastDropout, keep_mask


class _WhereMasked(torch.autograd.Function):
    """The same lanes as FastDropout, applied as a bool mask with torch.where (its previous form)."""

    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, x.new_zeros(())).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, grad.new_zeros(())).mul_(ctx.scale), None, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--tokens", type=int, default=574)
    args = ap.parse_args()
    fast = FastDropout(args.p).train()

    def bool_where(x):
        keep, scale = keep_mask(x.shape, args.p)
        return _WhereMasked.apply(x, keep, scale)

    peers = {"torch F.dropout (peft)": lambda x: F.dropout(x, args.p, True), "bool mask + torch.where": bool_where,
             "trajtune FastDropout": fast}
    print(f"{torch.get_num_threads()} threads, p {args.p}, {args.calls} alternating forward+backward calls per shape")
    out = {}
    for width in (576, 1536):
        x = torch.randn(args.tokens, width, requires_grad=True)
        g = torch.randn(args.tokens, width)
        times = {k: [] for k in peers}
        for _ in range(args.calls):
            for name, f in peers.items():
                t = time.perf_counter()
                f(x).backward(g)
                times[name].append(time.perf_counter() - t)
        best = {k: min(v) * 1e3 for k, v in times.items()}
        print(f"{args.tokens} x {width}:")
        for name, v in times.items():
            print(f"  {name:<26} best {best[name]:6.3f} ms  median {statistics.median(v) * 1e3:6.3f} ms  "
                  f"{best[name] / best['trajtune FastDropout']:4.2f}x FastDropout's time")
        out[f"{args.tokens}x{width}"] = {k: round(b, 4) for k, b in best.items()}
    print("JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
