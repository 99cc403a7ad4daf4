"""How many tokens a training file costs, and where they go (the figures behind the README's
follow-up and tool-listing paragraphs).

    python bench/record_tokens.py runs/demo/splits/train.jsonl            # the default model's tokenizer
    python bench/record_tokens.py train.jsonl --model path/to/model

Prints, per record on average: rendered tokens (as train-sft renders them, before max_length),
trained tokens (assistant turns), tokens of the tools block, user requests; then the median
length by shape.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--model", default=None, help="model folder (default: the cached default model)")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from trajtune.chat import tokenize_for_training, tools_block
    from trajtune.models import ensure_default_model

    tok = AutoTokenizer.from_pretrained(args.model or str(ensure_default_model()))
    n = total = trained = tools = requests = 0
    by_shape: dict[str, list[int]] = defaultdict(list)
    with open(args.path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            ids, labels = tokenize_for_training(tok, r["messages"], r.get("tools"))
            n += 1
            total += len(ids)
            trained += sum(1 for x in labels if x != -100)
            tools += len(tok(tools_block(r.get("tools")), add_special_tokens=False)["input_ids"]) if r.get("tools") else 0
            requests += sum(1 for m in r["messages"] if m.get("role") == "user")
            meta = r.get("metadata") or {}
            by_shape[str(meta.get("shape") or meta.get("category"))].append(len(ids))
    if not n:
        raise SystemExit(f"{args.path}: no records")
    print(f"{n} records: {total / n:.0f} tokens a record, {trained / n:.0f} trained ({trained / total:.1%}), "
          f"tools block {tools / n:.0f}, {requests / n:.2f} user requests")
    for shape, lens in sorted(by_shape.items()):
        print(f"  {shape}: {len(lens)} records, median {statistics.median(lens):.0f} tokens")


if __name__ == "__main__":
    main()
