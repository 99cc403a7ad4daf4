"""Speed of `trajtune evaluate` beside a plain per-task `model.generate` loop, same tasks, model, run.

    python bench/bench_evaluate.py                 # 64 tasks, default model, 96 new tokens, 64 slots
    python bench/bench_evaluate.py --tasks 16 --batch-size 16 --generate-engine

Tasks come from `trajtune generate tasks --split eval` (bench/out/eval_tasks_<N>.jsonl, made once);
if that command is unavailable, from data/examples/valid/task.jsonl repeated. Both paths render
prompts with trajtune.chat.render_prompt, generate greedily up to the same limit, stop at the same
end-of-turn tokens and cut replies with the same code, so they produce the same outputs; only the
way they batch differs. Prints
  evaluate        the real stage (trajtune.scripts.evaluate.run) with its default engine: shared prompt
                  prefixes computed once, no padding, continuous batching (trajtune/generation.py)
  per-task loop   one model.generate call per task, no padding
  (--generate-engine) evaluate --engine generate: model.generate on length-sorted left-padded batches
as generated tokens/s (generation time only; model loading excluded from both), the ratio
(target >= 5x) and the correctness check: greedy outputs agree on every task where both finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def make_tasks(n: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"eval_tasks_{n}.jsonl"
    if path.is_file() and sum(1 for _ in path.open()) >= n:
        return path
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "generate", "tasks", "--count", str(n), "--seed", "1",
                          "--split", "eval", "-o", str(path)], capture_output=True, text=True)
    if res.returncode == 0 and path.is_file():
        return path
    print(f"(generate tasks unavailable: {res.stderr.strip()[-200:]}; using data/examples/valid/task.jsonl)")
    ex = [json.loads(l) for l in (ROOT / "data" / "examples" / "valid" / "task.jsonl").read_text().splitlines() if l.strip()]
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({**ex[i % len(ex)], "id": f"bench-{i:03d}"}) + "\n")
    return path


def per_task_loop(model_path: str, tasks: list[dict], max_new_tokens: int) -> tuple[dict[str, tuple[str, int, bool]], float]:
    """The peer: what a person writes first: one generate call per task."""
    import torch

    from trajtune.chat import render_prompt
    from trajtune.generation import cut_reply, stop_token_ids
    from trajtune.models import load_model, load_tokenizer

    tok = load_tokenizer(model_path)
    model = load_model(model_path)
    gc = model.generation_config
    gc.do_sample, gc.temperature, gc.top_p, gc.top_k = False, None, None, None
    stops = stop_token_ids(tok, model)
    out, secs = {}, 0.0
    for t in tasks:
        enc = tok(render_prompt(tok, t["prompt"], t.get("tools")), return_tensors="pt", add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id)
        secs += time.perf_counter() - t0
        out[t["id"]] = cut_reply(tok, gen[0, enc["input_ids"].shape[1]:].tolist(), stops, [], max_new_tokens)
    return out, secs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=64, help="number of tasks (default 64)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tasks-file", help="use this task JSONL instead of generating tasks")
    ap.add_argument("--generate-engine", action="store_true", help="also time evaluate --engine generate (padded batches)")
    a = ap.parse_args()

    from trajtune.config import build
    from trajtune.models import resolve_model
    from trajtune.scripts.evaluate import Config, load_tasks, run

    task_file = Path(a.tasks_file).resolve() if a.tasks_file else make_tasks(a.tasks)
    tasks = load_tasks(str(task_file), a.tasks)
    model = resolve_model(a.model)
    print(f"{len(tasks)} tasks from {task_file}; model {model}; max_new_tokens {a.max_new_tokens}")

    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    try:
        # 1) evaluate, the real stage
        cfg = build(Config, None, {"tasks": str(task_file), "output": str(work), "model": model,
                                           "max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size,
                                           "fit_expected": False,  # the peer's one limit, for equal outputs
                                           "limit": a.tasks, "backend": "transformers"})
        rep = run(cfg)
        ev_secs = rep["models"]["model"]["seconds"]
        stats = rep["models"]["model"].get("engine_stats") or {}
        preds = {json.loads(l)["task_id"]: json.loads(l) for l in (work / "predictions.jsonl").read_text().splitlines()}
        ev_tokens = sum(p["generated_tokens"] for p in preds.values())
        gen_rate = None
        if a.generate_engine:
            cfg_g = build(Config, None, {**dataclasses.asdict(cfg), "output": str(work / "generate"), "engine": "generate"})
            rep_g = run(cfg_g)
            gpreds = [json.loads(l) for l in (work / "generate" / "predictions.jsonl").read_text().splitlines()]
            gen_rate = sum(p["generated_tokens"] for p in gpreds) / rep_g["models"]["model"]["seconds"]
            gen_same = sum(p["output"] == preds[p["task_id"]]["output"] for p in gpreds)
        # 2) the peer
        loop, loop_secs = per_task_loop(model, tasks, a.max_new_tokens)
        loop_tokens = sum(n for _, n, _ in loop.values())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ev_rate, loop_rate = ev_tokens / ev_secs, loop_tokens / loop_secs
    print(f"{'evaluate (batch %d)' % a.batch_size:24s} {ev_tokens:6d} tokens {ev_secs:8.1f} s {ev_rate:8.1f} tok/s")
    print(f"{'per-task loop':24s} {loop_tokens:6d} tokens {loop_secs:8.1f} s {loop_rate:8.1f} tok/s")
    if gen_rate is not None:
        print(f"{'evaluate --engine generate':24s} {gen_rate:8.1f} tok/s ({gen_rate / loop_rate:.2f}x the loop; "
              f"outputs identical to the default engine on {gen_same}/{len(gpreds)} tasks)")
    if stats:
        print(f"engine: {stats['rows']} slots, {stats['prompt_tokens']} prompt tokens of which {stats['prefilled_tokens']} "
              f"ran through the model (shared prefixes {100 * stats['prefix_share']:.1f}%), {stats['steps']} decode steps; "
              f"prefill {stats['prefill_s']:.1f} s, decode {stats['decode_s']:.1f} s")
    print(f"ratio evaluate / per-task loop: {ev_rate / loop_rate:.2f}x (target >= 5x)")
    both = [t["id"] for t in tasks if not preds[t["id"]]["truncated"] and not loop[t["id"]][2]]
    differ = [tid for tid in both if preds[tid]["output"] != loop[tid][0]]
    print(f"correctness: greedy outputs agree on {len(both) - len(differ)}/{len(both)} tasks where both finished "
          f"({len(tasks) - len(both)} hit the token limit in at least one)")
    same_all = sum(preds[t["id"]]["output"] == loop[t["id"]][0] for t in tasks)
    print(f"               identical outputs on {same_all}/{len(tasks)} tasks overall (truncated ones included)")
    for tid in differ[:5]:
        print(f"  differs: {tid}\n    evaluate: {preds[tid]['output'][:160]!r}\n    loop:     {loop[tid][0][:160]!r}")
    passed = sum(p["pass"] for p in preds.values())
    print(f"pass rate (evaluate): {passed}/{len(preds)}")
    return 0 if not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
