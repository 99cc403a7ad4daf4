"""`trajtune convert`: any common source of agent data -> trajtune records (or an export)."""
from __future__ import annotations

from typing import List, Optional

import typer

from trajtune.cli.common import err_console

HELP = ("Convert agent data (alpaca, sharegpt, openai, hermes, tool-logs, interactions, traces, atif, critiques, hh-rlhf, "
        "trajtune) into trajtune records, or export sft records to openai / sharegpt / alpaca-text.\n\n"
        "Every record is checked against its schema; rejected inputs go to a rejects JSONL with their line and "
        "reason. '-' reads stdin / writes stdout. Exit 1 when nothing converts.")


def register(app: typer.Typer) -> None:
    @app.command("convert", help=HELP, epilog="Example: trajtune convert --from sharegpt --to sft glaive.json data/sft.jsonl")
    def convert(
        inp: str = typer.Argument(..., metavar="IN", help="input JSON or JSONL file ('-' = stdin)"),
        out: str = typer.Argument(..., metavar="OUT", help="output JSONL file ('-' = stdout)"),
        source_format: Optional[str] = typer.Option(None, "--from", help="input format (default: auto-detect)"),
        to: Optional[str] = typer.Option(None, "--to", help="sft, preference, group, triplet, openai, sharegpt, alpaca-text"),
        config_file: Optional[str] = typer.Option(None, "--config", help="YAML config (flags override it)"),
        rejects: Optional[str] = typer.Option(None, "--rejects", help="rejects JSONL (default: OUT.rejects.jsonl)"),
        max_records: Optional[int] = typer.Option(None, "--max-records", help="stop after N records"),
        allow_placeholders: Optional[bool] = typer.Option(None, "--allow-placeholders", help="keep rows with {{placeholders}}"),
        quality_threshold: Optional[float] = typer.Option(None, "--quality-threshold", help="tool-logs: min success rate [0.90]"),
        min_length: Optional[int] = typer.Option(None, "--min-length", help="tool-logs: min tool-sequence length [1]"),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="tool-logs: max tool-sequence length [5]"),
        min_quality: Optional[float] = typer.Option(None, "--min-quality", help="interactions -> sft: min quality [0.8]"),
        min_quality_diff: Optional[float] = typer.Option(None, "--min-quality-diff", help="interactions -> preference: min gap [0.2]"),
        group_size: Optional[int] = typer.Option(None, "--group-size", help="interactions -> group: answers per group [4]"),
        agent_types: Optional[List[str]] = typer.Option(None, "--agent-types", help="interactions: keep these agent types (comma list)"),
        days_back: Optional[int] = typer.Option(None, "--days-back", help="interactions: only the last N days"),
        as_of: Optional[str] = typer.Option(None, "--as-of", help="interactions: reference date for --days-back [now]"),
        annotations: Optional[str] = typer.Option(None, "--annotations", help="traces: annotations file"),
        approved_only: Optional[bool] = typer.Option(None, "--approved-only/--all-spans", help="traces -> sft: only approved spans [approved-only]"),
        sessions: Optional[bool] = typer.Option(None, "--sessions", help="traces -> sft: one trajectory per session.id"),
        min_turns: Optional[int] = typer.Option(None, "--min-turns", help="traces --sessions: min turns [2]"),
        force: bool = typer.Option(False, "--force", help="convert again even if OUT is up to date"),
        json_out: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
    ) -> None:
        import orjson

        from trajtune import config
        from trajtune.converters.convert import ConvertConfig, run_convert
        from trajtune.errors import UsageError

        if json_out and out == "-":
            raise UsageError("--json and OUT '-' both use stdout", hint="write OUT to a file")
        if agent_types:
            agent_types = [a.strip() for item in agent_types for a in item.split(",") if a.strip()]
        given = dict(locals())  # every option above whose name is a config field overrides it
        overrides = {k: v for k, v in given.items() if k in ConvertConfig.__dataclass_fields__}
        cfg = config.build(ConvertConfig, config_file, overrides)
        summary = run_convert(cfg, inp, out, force=force)
        _report(summary)
        if json_out:
            typer.echo(orjson.dumps(summary).decode())
        if summary["converted"] == 0:
            err_console.print("[bold red]Error:[/] nothing converted; see the reasons above"
                              + (f" and {summary['rejects']}" if summary["rejects"] else ""), soft_wrap=True)
            # SystemExit, not typer.Exit: under run_app (standalone_mode=False) click turns
            # typer.Exit into a return value that is dropped (exit 0).
            raise SystemExit(1)


def _report(s: dict) -> None:
    if s.get("up_to_date"):
        err_console.print(f"{s['output']} is up to date ({s['converted']} records); --force converts again", soft_wrap=True)
        return
    err_console.print(f"[bold]{s['converted']}[/] records ({s['from']} -> {s['to']}) written to {s['output']}", soft_wrap=True)
    for title, counts in (("rejected", s["rejected"]), ("skipped", s["skipped"])):
        if counts:
            total = sum(counts.values())
            where = f" -> {s['rejects']}" if title == "rejected" and s["rejects"] else ""
            err_console.print(f"{total} {title}{where}:", soft_wrap=True)
            for reason, n in counts.items():
                err_console.print(f"  {n:>6}  {reason}", markup=False)
    if s["rejected"] and not s["rejects"]:
        err_console.print("rejected inputs were not written (output is stdout); pass --rejects FILE to keep them",
                          soft_wrap=True)
