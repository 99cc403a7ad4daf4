"""`trajtune split IN -o OUT_DIR`: records -> OUT_DIR/train.jsonl, val.jsonl, test.jsonl.

Deterministic for a seed; no (normalised) prompt in two splits; optionally stratified and
balanced. The work is :func:`trajtune.converters.split.run_split`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from trajtune.config import field
from trajtune.errors import ConfigError, UsageError
from trajtune.stage import Stage


@dataclass
class Config:
    input: str = field("", positional=True, metavar="IN", help="records JSONL ('-' = stdin)")
    output: Optional[str] = field(None, flags=("-o",), output=True, metavar="OUT_DIR",
                                  help="folder for train/val/test.jsonl (default: IN's folder/<IN name>-split)")
    ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15], help="train,val,test fractions (sum 1)")
    seed: int = field(42, help="seed: the same seed and input give the same split")
    group_by: str = field("prompt", help="prompt or metadata.KEY: records of one group stay in one split")
    stratify_by: Optional[str] = field(None, help="tool or metadata.KEY: split each stratum by the ratios")
    balance: bool = field(False, help="cap over-represented strata (tools or categories)")
    balance_cap: Optional[int] = field(None, help="max records per stratum with --balance (default 1.5 x median)")

    def check(self) -> None:
        if not self.input:
            raise UsageError("no input given", hint="trajtune split data/sft.jsonl -o data/splits")
        if self.output is None and self.input == "-":
            raise UsageError("reading stdin needs -o OUT_DIR", hint="trajtune split - -o data/splits")
        if self.output == "-":
            raise UsageError("split writes three files into a folder: -o OUT_DIR, not '-'")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or not math.isclose(sum(self.ratios), 1.0, abs_tol=1e-6):
            raise ConfigError(f"--ratios needs three non-negative fractions summing to 1, got {','.join(map(str, self.ratios))}",
                              hint="e.g. --ratios 0.8,0.1,0.1")
        for name in ("group_by", "stratify_by"):
            v = getattr(self, name)
            allowed = ("prompt",) if name == "group_by" else ("tool",)
            if v is not None and v not in allowed and not (v.startswith("metadata.") and len(v) > 9):
                raise ConfigError(f"--{name.replace('_', '-')} must be {allowed[0]} or metadata.KEY, got '{v}'")
        if self.balance_cap is not None and self.balance_cap < 1:
            raise ConfigError("--balance-cap must be at least 1")

    def out_dir(self) -> str:
        if self.output:
            return self.output
        p = Path(self.input)
        return str(p.with_name((p.name[:-6] if p.name.endswith(".jsonl") else p.stem) + "-split"))


def run(cfg: Config) -> dict:
    from trajtune.converters.split import run_split

    return run_split(cfg, cfg.input, cfg.out_dir())


def render(s: dict, cfg: Config) -> None:
    from rich.table import Table

    from trajtune.console import err_console

    if cfg.balance:
        t = Table(title="strata before / after --balance")
        for col in ("stratum", "before", "after"):
            t.add_column(col, justify="left" if col == "stratum" else "right")
        for k, v in s["strata_before"].items():
            t.add_row(k, str(v), str(s["strata_after"].get(k, 0)))
        err_console.print(t)
    t = Table(title=f"split of {s['input']} (seed {s['seed']}, {s['groups']} prompt groups)")
    for col in ("split", "count", "success rate", "avg tool-seq len", "distinct tools"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for row in s["table"]:
        rate = "-" if row["success_rate"] is None else f"{row['success_rate']:.1%}"
        t.add_row(row["split"], str(row["count"]), rate, f"{row['avg_tool_seq_len']:.2f}", str(row["distinct_tools"]))
    err_console.print(t)
    err_console.print(f"wrote {', '.join(f'{k}.jsonl ({v})' for k, v in s['counts'].items())} to {s['out_dir']}")


STAGE = Stage(
    name="split", config=Config, run=run, render=render,
    help="Split records into OUT_DIR/train.jsonl, val.jsonl and test.jsonl: deterministic for a seed, no "
         "(normalised) prompt in two splits, optionally stratified and balanced. Prints a per-split table: "
         "count, success rate, average tool-sequence length, distinct tools. The resolved config is saved as "
         "OUT_DIR/split.yaml (repeat the run with --config).",
    example="trajtune split data/sft.jsonl -o data/splits --ratios 0.8,0.1,0.1 --stratify-by tool --balance",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
