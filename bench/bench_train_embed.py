"""Speed and retrieval quality of `train-embed` beside a plain SentenceTransformerTrainer script
with default settings, same data, same run.

    python bench/bench_train_embed.py                          # all-MiniLM-L6-v2, 20 steps x 32 triplets
    python bench/bench_train_embed.py --steps 50 --batch-size 64 --threads 1
    python bench/bench_train_embed.py --tiny --steps 2 --batch-size 4   # smoke: a tiny local model

Data: the README's tool-retrieval data: `trajtune generate tools --synthesize 1000` (offline, seeded;
families held out for evaluation), `trajtune generate trajectories` over it -> tool-retrieval
triplets (the same function `convert --to triplet` runs) for training; `trajtune generate tasks`
(held-out families and phrasings) as the retrieval queries, ranked against every tool of the
catalog. ``--catalog DIR_OR_FILE`` uses another catalog instead (e.g. data/tools: its 22 tools are
too few for batches of 32+ without repeated texts, so train-embed's no-duplicates batches hold far
fewer rows than the peer's and the two runs do not train on the same amount). Both trainers get
the same model, triplets, optimizer steps, batch (--batch-size triplets a step), learning rate and
MultipleNegativesRankingLoss; each runs in a fresh process, so peak RSS is its own:

  plain       SentenceTransformerTrainer(SentenceTransformerTrainingArguments(use_cpu=True, report_to
              none, no checkpoints) + defaults: the default batch sampler, fp32), MNRL
  train-embed the real stage function (scripts/train_embed.py) with its shipped defaults (no-duplicates
              batches, bf16 autocast on CPUs with native bf16), no validation split, no checkpoints

tokens/s = non-padding tokens encoded in training (anchor + positive + negative, counted from the
attention masks of the batches each trainer built) / seconds inside trainer.train(). Quality, for
the base model and both tuned models, outside the timing: recall@1 and MRR@10 of the held-out
requests against the catalog (trajtune.retrieval, the same code as `evaluate --corpus`), strict:
a same-sense twin ranked first counts as a miss. Prints both runs, the ratio (target >= 1x, memory
no higher) and the quality.
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

OUT = Path(__file__).resolve().parent / "out" / "train_embed"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def quality(model, tasks: str, catalog: str) -> dict:
    from trajtune.retrieval import load_set, rank_all, score_ranking

    rs = load_set(tasks, catalog)
    qids = list(rs.queries)
    rankings, _ = rank_all(model, rs, qids, 64)
    rows = [score_ranking(r, rs.relevant[q]) for q, r in zip(qids, rankings)]
    return {"queries": len(rows), "recall@1": round(sum(r["recall@1"] for r in rows) / len(rows), 4),
            "mrr@10": round(sum(r["mrr@10"] for r in rows) / len(rows), 4)}


def run_plain(args) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    class Counting(SentenceTransformerTrainer):  # counts tokens only; trains exactly as the parent does
        tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self.tokens += int(sum(int(v.sum()) for k, v in inputs.items() if k.endswith("attention_mask")))
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    rows = [{"anchor": r["anchor"], "positive": r["positive"], "negative": r["negative"]} for r in read(args.train)]
    model = SentenceTransformer(args.model_path, device="cpu")
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(OUT / "plain"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, seed=args.seed, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = Counting(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                       loss=MultipleNegativesRankingLoss(model))
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    q = quality(model, args.tasks, args.catalog)
    return {"run": "plain SentenceTransformerTrainer", "seconds": round(secs, 2), "tokens": trainer.tokens,
            "tokens_per_s": round(trainer.tokens / secs, 1), "peak_rss_mb": peak_rss_mb(), **q}


def run_ours(args) -> dict:
    from sentence_transformers import SentenceTransformer

    from trajtune import config
    from trajtune.scripts.train_embed import Config, run

    out = OUT / "ours"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cfg = config.build(Config, None, {"data": [args.train], "model": args.model_path, "output": str(out),
                                      "max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
                                      "seed": args.seed, "auto_split": False, "save_steps": 10 ** 6, "min_records": 2,
                                      "logging_steps": 10 ** 6, "allow_unreviewed": True, "resume": "never"})
    s = run(cfg)
    model = SentenceTransformer(s["final"], device="cpu")
    q = quality(model, args.tasks, args.catalog)
    return {"run": "train-embed", "seconds": s["train_time_s"], "tokens": s["tokens_seen"],
            "tokens_per_s": s["tokens_per_second"], "peak_rss_mb": s["peak_memory_mb"], "precision": s["precision"], **q}


def prepare(args) -> tuple[str, Path, Path]:
    """The model folder, the training triplets and the held-out tasks."""
    from trajtune.converters.common import Reject
    from trajtune.converters.tool_retrieval import triplets

    OUT.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from trajtune.testing import build_tiny_embedder

        model_path = str(build_tiny_embedder(OUT / "tiny"))
    else:
        from trajtune.models import resolve_embed_model

        model_path = resolve_embed_model(args.model)
    trajs, tasks, train = OUT / "trajectories.jsonl", OUT / "tasks.jsonl", OUT / "triplets.jsonl"
    gen = [sys.executable, "-m", "trajtune.cli.app", "generate"]
    if args.catalog == "synthetic":
        args.catalog = str(OUT / "tools.json")
        Path(args.catalog).unlink(missing_ok=True)
        res = subprocess.run([*gen, "tools", "--synthesize", "1000", "--seed", str(args.seed), "-o", args.catalog],
                             capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"generate tools failed:\n{res.stderr[-2000:]}")
    gen_cat = ["--catalog", args.catalog]
    trajs.unlink(missing_ok=True)
    tasks.unlink(missing_ok=True)
    for cmd in ([*gen, "trajectories", *gen_cat, "--count", str(max(20, args.steps * args.batch_size)), "--seed", str(args.seed),
                 "-o", str(trajs)], [*gen, "tasks", *gen_cat, "--count", str(args.tasks_count), "--seed", str(args.seed + 1),
                                     "-o", str(tasks)]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    rows = []
    for rec in read(trajs):
        try:
            rows.extend(triplets(rec))
        except Reject:
            pass
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model_path, train, tasks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per trainer (default 20)")
    ap.add_argument("--batch-size", type=int, default=32, help="triplets per step (default 32)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--tasks-count", type=int, default=300, help="held-out tasks for the quality check (no-call tasks are skipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch's default)")
    ap.add_argument("--model", default="default", help="embedding model folder or 'default' (all-MiniLM-L6-v2)")
    ap.add_argument("--catalog", default="synthetic",
                    help="tool catalog to generate from and rank for the quality check (default: 1,000 synthetic tools)")
    ap.add_argument("--tiny", action="store_true", help="a tiny locally built model (smoke run)")
    ap.add_argument("--only", choices=["plain", "ours", "base"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--tasks", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.only:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.only == "base":
            from sentence_transformers import SentenceTransformer

            result = {"run": "base", **quality(SentenceTransformer(args.model_path, device="cpu"), args.tasks, args.catalog)}
        else:
            result = run_plain(args) if args.only == "plain" else run_ours(args)
        print("RESULT " + json.dumps(result))
        return 0
    model_path, train, tasks = prepare(args)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    results = []
    for which in ("base", "plain", "ours"):
        cmd = [sys.executable, __file__, "--only", which, "--model-path", model_path, "--train", str(train),
               "--tasks", str(tasks), "--catalog", args.catalog, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
               "--threads", str(args.threads)]
        print(f"running {which} ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            sys.exit(f"{which} failed:\n{res.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    base, peer, ours = results
    print(f"model {model_path}; {args.steps} steps x {args.batch_size} triplets ({len(read(train))} available); "
          f"{ours['queries']} held-out requests; threads {args.threads or 'default'}")
    for r in results:
        print(json.dumps(r))
    print(f"tokens/s: train-embed {ours['tokens_per_s']} vs plain SentenceTransformerTrainer {peer['tokens_per_s']} -> "
          f"{ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x (target >= 1x)")
    print(f"held-out recall@1: base {base['recall@1']}, train-embed {ours['recall@1']}, plain {peer['recall@1']}; "
          f"MRR@10: base {base['mrr@10']}, train-embed {ours['mrr@10']}, plain {peer['mrr@10']}")
    print(f"peak RSS MB: train-embed {ours['peak_rss_mb']} vs {peer['peak_rss_mb']} (target: no higher)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
