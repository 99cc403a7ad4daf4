"""How many tokens each task's right answer takes, against a generation limit.

    python bench/answer_tokens.py runs/demo/bfcl/tasks.jsonl [--limit 128] [--model default]

Per category (``metadata.bfcl_category`` or ``metadata.category``): tasks, the longest expected
reply in tokens, how many exceed ``--limit`` (no model can pass those at a flat limit), and how
many get a raised limit from evaluate's ``fit_expected`` (1.5 x tokens + 16 > limit). The expected
reply is ``trajtune.scripts.evaluate.expected_reply``: trajtune's tool-call format, each argument
at its longest acceptable value.
"""
from __future__ import annotations

import argparse
import collections
import json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tasks")
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    from transformers import AutoTokenizer

    from trajtune.models import resolve_model
    from trajtune.scripts.evaluate import expected_reply

    tok = AutoTokenizer.from_pretrained(resolve_model(a.model, weights=False))
    lens: dict[str, list[int]] = collections.defaultdict(list)
    with open(a.tasks, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                t = json.loads(line)
                meta = t.get("metadata") or {}
                text = expected_reply(t)
                lens[meta.get("bfcl_category") or meta.get("category") or "-"].append(
                    len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0)
    print(f"| category | tasks | longest answer (tokens) | over {a.limit} | raised by fit_expected |")
    print("|---|---|---|---|---|")
    for c, v in sorted(lens.items()):
        print(f"| {c} | {len(v)} | {max(v)} | {sum(x > a.limit for x in v)} | {sum(x and (3 * x + 1) // 2 + 16 > a.limit for x in v)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
