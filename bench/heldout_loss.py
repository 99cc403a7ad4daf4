"""Token-weighted loss of SFT adapters on records none of them trained on (assistant tokens only).

    python bench/heldout_loss.py heldout.jsonl --exclude runs/demo/data/train_all.jsonl \\
        --adapter runs/a/sft/final --adapter runs/b/sft/final [--max-length 768]

Records whose user requests equal a record's in an --exclude file are skipped, and so are records
longer than --max-length tokens (as train-sft drops them). Each adapter is merged into the base
model (fp32) and scored on the same tokens: the comparison the README's split lever used, with a
held-out file made by `trajtune generate trajectories ... --seed 7`.
"""
from __future__ import annotations

import argparse
import json


def _requests(rec: dict) -> str:
    return json.dumps([m.get("content") for m in rec.get("messages", []) if m.get("role") == "user"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--adapter", action="append", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N kept records")
    a = ap.parse_args()
    import torch

    from trajtune.chat import tokenize_for_training
    from trajtune.models import load_model, load_tokenizer, resolve_model

    seen = {_requests(json.loads(line)) for f in a.exclude for line in open(f, encoding="utf-8") if line.strip()}
    recs = [r for r in (json.loads(line) for line in open(a.records, encoding="utf-8") if line.strip())
            if _requests(r) not in seen]
    base = resolve_model(a.model)
    tok = load_tokenizer(base)
    data = [d for d in (tokenize_for_training(tok, r["messages"], r.get("tools")) for r in recs)
            if len(d[0]) <= a.max_length][: a.limit]
    print(f"{len(recs)} records share no request with --exclude; {len(data)} scored", flush=True)
    for adapter in a.adapter:
        model = load_model(base, [adapter], dtype="fp32", device="cpu", merge=True)
        total = tokens = 0.0
        with torch.inference_mode():
            for ids, labels in data:
                logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
                target = torch.tensor(labels[1:])
                keep = target != -100
                total += torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum").item()
                tokens += keep.sum().item()
        print(f"{adapter}: loss {total / tokens:.4f} over {int(tokens)} tokens", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
