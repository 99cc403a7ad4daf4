"""`trajtune review FILE`: approve or reject generated records before training uses them.

FILE is rewritten in place (atomically), by design: the decisions are the point. They are also
appended, as they are made, to ``FILE.review.jsonl``, so an interrupted review resumes where it
stopped. Without ``--approve-all``, ``--approve-ids`` or ``--reject-ids`` the review is
interactive: each pending record is shown on stderr and the answer read from stdin (a, r, s, q).
The work is :func:`trajtune.generators.review.review_file`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

from trajtune.config import field
from trajtune.errors import UsageError
from trajtune.stage import Stage

_KEYS = {"a": "approved", "approve": "approved", "y": "approved", "r": "rejected", "reject": "rejected",
         "n": "rejected", "s": "skip", "skip": "skip", "": "skip", "q": "quit", "quit": "quit"}


@dataclass
class Config:
    input: str = field("", positional=True, metavar="FILE",
                       help="JSONL file of generated records (rewritten in place, atomically)")
    approve_all: bool = field(False, help="approve every pending record")
    approve_ids: Optional[str] = field(None, metavar="PATH", help="file of ids to approve (one per line, or JSONL with ids)")
    reject_ids: Optional[str] = field(None, metavar="PATH", help="file of ids to reject (one per line, or JSONL with ids)")
    drop_rejected: bool = field(False, help="remove rejected records from FILE")

    def check(self) -> None:
        if not self.input:
            raise UsageError("no input given", hint="trajtune review data/train.jsonl --approve-all")
        if self.input == "-":
            raise UsageError("review needs a file, not stdin", hint="decisions are written back into the file")

    @property
    def interactive(self) -> bool:
        return not (self.approve_all or self.approve_ids or self.reject_ids)


def _show(rec: dict, index: int, remaining: int) -> None:
    from rich.panel import Panel

    from trajtune.console import err_console
    from trajtune.generators.review import describe

    lines = [f"[bold]{label}[/]: {text}" for label, text in describe(rec)]
    err_console.print(Panel("\n".join(lines), title=f"{rec.get('id')}  (line {index + 1}, {remaining} left)",
                            title_align="left"), markup=True, soft_wrap=False)


def ask(rec: dict, index: int, remaining: int) -> str:
    """Show one record and read the decision from stdin: approved, rejected, skip or quit (end of input)."""
    from trajtune.console import err_console

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


def run(cfg: Config) -> dict:
    from trajtune.generators.review import review_file

    summary = review_file(cfg.input, approve_all=cfg.approve_all, approve_ids=cfg.approve_ids,
                          reject_ids=cfg.reject_ids, drop_rejected=cfg.drop_rejected,
                          ask=ask if cfg.interactive else None)
    return summary.as_dict()


def render(s: dict, cfg: Config) -> None:
    from rich.markup import escape

    from trajtune.console import err_console

    f = s["file"]
    err_console.print(f"{f}: {s['approved']} approved, {s['rejected']} rejected, {s['pending']} pending"
                      + (f", {s['dropped']} dropped" if s["dropped"] else "")
                      + (f", {s['unmarked']} not subject to review" if s["unmarked"] else ""),
                      soft_wrap=True, markup=False)
    if s["unknown_ids"]:
        err_console.print(f"[yellow]Warning:[/] {len(s['unknown_ids'])} id(s) not in {escape(f)}, "
                          f"e.g. {escape(s['unknown_ids'][0])}",
                          soft_wrap=True)
    if s["pending"]:
        err_console.print(f"run `trajtune review {f}` again to continue, or `--approve-all`", soft_wrap=True,
                          markup=False)


def lineage(cfg: Config, summary: dict) -> dict:
    """review's output is its input, rewritten: the manifest beside FILE (the generating run's is kept in it)."""
    return {"output": cfg.input, "outputs": [cfg.input]}


STAGE = Stage(
    name="review", config=Config, run=run, render=render, lineage=lineage,
    help="Review generated records (metadata.review: pending) before training: walk through them and approve, "
         "reject or skip each one (answers read from stdin), or decide in bulk with --approve-all / --approve-ids / "
         "--reject-ids. Decisions are saved as they are made in FILE.review.jsonl, so an interrupted review resumes "
         "where it stopped, and are applied to FILE atomically (FILE is rewritten in place). train-sft and "
         "train-dpo refuse pending and rejected records.",
    example="trajtune review data/train.jsonl --approve-all",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
