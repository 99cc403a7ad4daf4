"""`trajtune advise DATA...`: which training method the data supports, and what to do when none does.

Reads sft and preference files, checks every record (``trajtune.records.check``: schema and agent
checks, the one record check), counts review states (approved, pending, rejected; converted real
data carries none and counts as approved) and applies the design's thresholds
(``trajtune.advice``): at least 20 approved preference pairs -> DPO (on top of SFT when there are
at least 50 approved sft records too); at least 50 approved sft records -> SFT; otherwise how many
more are needed and the `trajtune generate` command that makes them. Records of other kinds
(tasks, groups, triplets) are counted and left out. Nothing is written.
"""
from __future__ import annotations

from dataclasses import dataclass

from trajtune.config import field
from trajtune.errors import UsageError
from trajtune.stage import Stage

COUNTED = ("records", "approved", "pending", "rejected", "invalid")


@dataclass
class Config:
    data: list[str] = field(default_factory=list, positional=True, metavar="DATA",
                            help="sft and preference JSONL files ('-' = stdin)")

    def check(self) -> None:
        if not self.data:
            raise UsageError("no data files given", hint="trajtune advise data/train.jsonl data/pairs.jsonl")
        if self.data.count("-") > 1:
            raise UsageError("stdin ('-') can be read once")


def count_file(path: str) -> dict:
    """Per kind: records, approved, pending, rejected, invalid (fails the record check or is not JSON)."""
    import orjson

    from trajtune.generators.review import PENDING, REJECTED, review_state
    from trajtune.jsonl import display_name, iter_lines, too_deep
    from trajtune.paths import check_input
    from trajtune.records import check, detect_kind

    check_input(path)
    kinds: dict[str, dict] = {}
    name = display_name(path)
    for _, _, raw, _ in iter_lines(path):
        obj = None
        if raw is not None:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = None
        kind = detect_kind(obj) if isinstance(obj, dict) and not too_deep(raw, obj) else None
        c = kinds.setdefault(kind or "unknown", dict.fromkeys(COUNTED, 0))
        c["records"] += 1
        if kind is None or check(obj, kind):
            c["invalid"] += 1
            continue
        state = review_state(obj)
        c["pending" if state == PENDING else "rejected" if state == REJECTED else "approved"] += 1
    return {"path": name, "kinds": kinds}


def run(cfg: Config) -> dict:
    """Count every file, then the advice (``trajtune.advice.advise``)."""
    from trajtune.advice import advise

    files = [count_file(p) for p in cfg.data]
    totals = {k: dict.fromkeys(COUNTED, 0) for k in ("sft", "preference")}
    used: dict[str, list[str]] = {"sft": [], "preference": []}
    other = 0
    for f in files:
        for kind, c in f["kinds"].items():
            if kind in totals:
                for k in COUNTED:
                    totals[kind][k] += c[k]
                if c["approved"]:
                    used[kind].append(f["path"])
            else:
                other += c["records"]
    advice = advise(totals["sft"]["approved"], totals["preference"]["approved"], used["sft"], used["preference"])
    pending = totals["sft"]["pending"] + totals["preference"]["pending"]
    if pending:  # approving them may be all it takes
        reviews = [f"trajtune review {f['path']}" for f in files if any(c["pending"] for c in f["kinds"].values())]
        would = advise(totals["sft"]["approved"] + totals["sft"]["pending"],
                       totals["preference"]["approved"] + totals["preference"]["pending"])["method"]
        if would != advice["method"]:
            advice["reason"] = (f"{totals['sft']['approved']} approved sft records and {totals['preference']['approved']} "
                                f"approved pairs, but {pending} records are pending review: approved, they would support {would}")
            advice["commands"] = [*reviews, "trajtune advise " + " ".join(f["path"] for f in files)]
            advice["notes"] = []
        else:
            advice["notes"].append(f"{pending} records are pending review (they count once approved): " + "; ".join(reviews))
    return {"files": files, "sft": totals["sft"], "preference": totals["preference"], "other_records": other, **advice}


def render(summary: dict, cfg: Config) -> None:
    from rich.table import Table

    from trajtune.console import err_console

    table = Table(title="advise: what the data supports")
    for col in ("file", "kind", *COUNTED):
        table.add_column(col, justify="left" if col in ("file", "kind") else "right")
    for f in summary["files"]:
        for kind, c in f["kinds"].items():
            table.add_row(f["path"], kind, *(str(c[k]) for k in COUNTED))
    err_console.print(table)
    say = lambda text: err_console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"method: {summary['method']}: {summary['reason']}")
    for c in summary["commands"]:
        say(f"  {c}")
    for n in summary["notes"]:
        say(f"note: {n}")


STAGE = Stage(
    name="advise", config=Config, run=run, render=render,
    help="Say which training method the data supports, with the design's thresholds: at least 20 approved "
         "preference pairs -> DPO (on top of SFT when there are also 50 approved sft records); at least 50 approved "
         "sft records -> SFT; otherwise how many more are needed and the `trajtune generate` command that makes them. "
         "Every record is checked and its review state counted (pending and rejected records do not count).",
    example="trajtune advise data/train.jsonl data/pairs.jsonl",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
