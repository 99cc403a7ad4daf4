"""`trajtune review FILE`: approve or reject generated records before training uses them."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from trajtune.cli.common import err_console

_KEYS = {"a": "approved", "approve": "approved", "y": "approved", "r": "rejected", "reject": "rejected",
         "n": "rejected", "s": "skip", "skip": "skip", "": "skip", "q": "quit", "quit": "quit"}


def _show(rec: dict, index: int, remaining: int) -> None:
    from rich.panel import Panel

    from trajtune.generators.review import describe

    lines = [f"[bold]{label}[/]: {text}" for label, text in describe(rec)]
    err_console.print(Panel("\n".join(lines), title=f"{rec.get('id')}  (line {index + 1}, {remaining} left)",
                            title_align="left"), markup=True, soft_wrap=False)


def _ask(rec: dict, index: int, remaining: int) -> str:
    _show(rec, index, remaining)
    while True:
        err_console.print("[a]pprove / [r]eject / [s]kip / [q]uit > ", end="", markup=False)
        line = sys.stdin.readline()
        if not line:  # end of input: stop here; decisions so far are kept
            err_console.print()
            return "quit"
        ans = _KEYS.get(line.strip().lower())
        if ans:
            return ans
        err_console.print(f"unknown answer {line.strip()!r}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command(
        "review",
        help="Review generated records (metadata.review: pending) before training: walk through them and approve, "
        "reject or skip each one, or approve in bulk with --approve-all / --approve-ids. Decisions are saved as "
        "they are made in FILE.review.jsonl, so an interrupted review resumes where it stopped, and are applied to "
        "FILE atomically. train-sft and train-dpo refuse pending and rejected records.",
        epilog="Example: trajtune review data/train.jsonl --approve-all",
    )
    def review(
        file: Path = typer.Argument(..., help="JSONL file of generated records (rewritten in place, atomically)"),
        approve_all: bool = typer.Option(False, "--approve-all", help="approve every pending record"),
        approve_ids: Optional[Path] = typer.Option(None, "--approve-ids", help="file of ids to approve (one per line, or JSONL with ids)"),
        reject_ids: Optional[Path] = typer.Option(None, "--reject-ids", help="file of ids to reject (one per line, or JSONL with ids)"),
        drop_rejected: bool = typer.Option(False, "--drop-rejected", help="remove rejected records from FILE"),
        as_json: bool = typer.Option(False, "--json", help="print the review summary as JSON on stdout"),
    ) -> None:
        from trajtune.generators.review import review_file

        interactive = not (approve_all or approve_ids or reject_ids)
        summary = review_file(file, approve_all=approve_all, approve_ids=approve_ids, reject_ids=reject_ids,
                              drop_rejected=drop_rejected, ask=_ask if interactive else None)
        if as_json:
            typer.echo(json.dumps(summary.as_dict()))
        else:
            err_console.print(f"{file}: {summary.approved} approved, {summary.rejected} rejected, "
                              f"{summary.pending} pending" + (f", {summary.dropped} dropped" if summary.dropped else "")
                              + (f", {summary.unmarked} not subject to review" if summary.unmarked else ""), soft_wrap=True)
            if summary.unknown_ids:
                err_console.print(f"[yellow]Warning:[/] {len(summary.unknown_ids)} id(s) not in {file}, "
                                  f"e.g. {summary.unknown_ids[0]}", soft_wrap=True)
            if summary.pending:
                err_console.print(f"run `trajtune review {file}` again to continue, or `--approve-all`", soft_wrap=True)
