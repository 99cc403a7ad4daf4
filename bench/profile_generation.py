"""The figures behind evaluate's engine (README design notes), measured on the default model.

    python bench/profile_generation.py            # 16 demo-style prompts, default model, fp32
    python bench/profile_generation.py --model DIR --tasks-file tasks.jsonl

Prints
  1. prefill of 16 prompts as one left-padded batch vs one prompt at a time (and the padding share)
  2. prefill of a prompt's suffix on top of a cached prefix: tokens/s and the GFLOP/s it implies
  3. the cost of one decode step of the slot engine with 1, 16, 32 and 64 rows (450-token cache)
Not a benchmark against a peer (see bench_evaluate.py for that): it explains where time goes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def best(f, n: int = 3) -> float:
    f()  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tasks-file", help="task JSONL (default: 16 generated eval tasks, as bench_evaluate.py makes them)")
    a = ap.parse_args()

    import torch
    from transformers.cache_utils import DynamicCache

    from bench_evaluate import make_tasks
    from trajtune.chat import render_prompt
    from trajtune.generation import _make_slot_cache, _SlotState
    from trajtune.models import load_model, load_tokenizer, resolve_model
    from trajtune.scripts.evaluate import load_tasks

    path = resolve_model(a.model)
    tok, model = load_tokenizer(path), load_model(path)
    tasks = load_tasks(a.tasks_file or str(make_tasks(16)), 16)
    prompts = [render_prompt(tok, t["prompt"], t.get("tools")) for t in tasks]
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    body_params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    with torch.inference_mode():
        # 1) padded batch vs one at a time
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        real = int(enc["attention_mask"].sum())
        padded = best(lambda: model(**enc, logits_to_keep=1), n=1)
        singles = [tok(p, return_tensors="pt", add_special_tokens=False)["input_ids"] for p in prompts]
        one = best(lambda: [model(input_ids=x, logits_to_keep=1) for x in singles], n=1)
        print(f"prefill of {len(prompts)} prompts ({real} tokens): padded batch {padded:.1f} s "
              f"({100 * (1 - real / enc['input_ids'].numel()):.0f}% padding), one at a time {one:.1f} s")
        # 2) a 250-token suffix on a 120-token cached prefix
        pre, suf = 120, 250
        kv = [(torch.randn(1, cfg.num_key_value_heads, pre, head_dim),
               torch.randn(1, cfg.num_key_value_heads, pre, head_dim)) for _ in range(cfg.num_hidden_layers)]
        x = torch.randint(0, cfg.vocab_size, (1, suf))
        pos = torch.arange(pre, pre + suf)[None]
        s = best(lambda: model(input_ids=x, position_ids=pos, cache=DynamicCache(ddp_cache_data=kv), use_cache=True,
                               logits_to_keep=1))
        print(f"suffix prefill ({suf} tokens on a {pre}-token prefix): {s:.3f} s, {suf / s:.0f} tok/s, "
              f"{2 * body_params * suf / s / 1e9:.0f} GFLOP/s of the layers' weights")
        # 3) decode steps
        length = 450
        for n in (1, 16, 32, 64):
            state = _SlotState()
            cache = _make_slot_cache(cfg.num_hidden_layers, state, (n, length + 8))
            for layer in cache.layers:
                k = torch.randn(n, cfg.num_key_value_heads, length, head_dim)
                layer.lazy_initialization(k, k)
                layer.keys[:, :, :length] = k
                layer.values[:, :, :length] = k
            cols = torch.full((n, 1), length)
            state.n, state.kv_len, state.rows, state.cols = n, length + 1, torch.arange(n)[:, None], cols
            mask = (torch.arange(length + 1)[None, :] <= cols)[:, None, None, :]
            ids = torch.randint(0, cfg.vocab_size, (n, 1))
            step = best(lambda: model(input_ids=ids, position_ids=cols, attention_mask=mask, cache=cache, use_cache=True), n=5)
            print(f"decode step, {n:2d} rows, {length}-token cache: {1000 * step:6.1f} ms ({1000 * step / n:5.1f} ms a token)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
