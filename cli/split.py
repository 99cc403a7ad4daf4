"""`trajtune split`: records -> OUT_DIR/train.jsonl, val.jsonl, test.jsonl (prompt-grouped, seeded)."""
from __future__ import annotations

from typing import Optional

import typer

from trajtune.cli.common import err_console

HELP = ("Split records into OUT_DIR/train.jsonl, val.jsonl and test.jsonl: deterministic for a seed, no "
        "(normalised) prompt in two splits, optionally stratified and balanced. Prints a per-split table: "
        "count, success rate, average tool-sequence length, distinct tools.")


def register(app: typer.Typer) -> None:
    @app.command("split", help=HELP,
                 epilog="Example: trajtune split data/sft.jsonl data/splits --ratios 0.8,0.1,0.1 --stratify-by tool --balance")
    def split(
        inp: str = typer.Argument(..., metavar="IN", help="records JSONL ('-' = stdin)"),
        out_dir: Optional[str] = typer.Argument(None, metavar="OUT_DIR",
                                                help="folder for train/val/test.jsonl [IN's folder/<IN name>-split]"),
        ratios: Optional[str] = typer.Option(None, "--ratios", help="train,val,test fractions [0.7,0.15,0.15]"),
        seed: Optional[int] = typer.Option(None, "--seed", help="random seed [42]"),
        group_by: Optional[str] = typer.Option(None, "--group-by", help="prompt or metadata.KEY [prompt]"),
        stratify_by: Optional[str] = typer.Option(None, "--stratify-by", help="tool or metadata.KEY"),
        balance: Optional[bool] = typer.Option(None, "--balance", help="cap over-represented strata"),
        balance_cap: Optional[int] = typer.Option(None, "--balance-cap", help="max records per stratum [1.5 x median]"),
        config_file: Optional[str] = typer.Option(None, "--config", help="YAML config (flags override it)"),
        json_out: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
    ) -> None:
        import orjson

        from trajtune import config
        from trajtune.converters.split import SplitConfig, run_split

        if out_dir is None:
            if inp == "-":
                from trajtune.errors import UsageError

                raise UsageError("reading stdin needs OUT_DIR", hint="trajtune split - data/splits")
            from pathlib import Path

            p = Path(inp)
            out_dir = str(p.with_name((p.name[:-6] if p.name.endswith(".jsonl") else p.stem) + "-split"))
        overrides = {"ratios": ratios, "seed": seed, "group_by": group_by, "stratify_by": stratify_by,
                     "balance": balance, "balance_cap": balance_cap}
        cfg = config.build(SplitConfig, config_file, overrides)
        summary = run_split(cfg, inp, out_dir)
        _report(summary, cfg.balance)
        if json_out:
            typer.echo(orjson.dumps(summary).decode())


def _report(s: dict, balance: bool) -> None:
    from rich.table import Table

    if balance:
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
