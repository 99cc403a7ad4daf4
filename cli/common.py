"""What every command shares: error translation to exit codes, consoles, config loading."""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console


from trajtune.errors import TrajtuneError

# Progress and messages go to stderr, so stdout stays free for data ('-') and --json summaries.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def fail(exc: TrajtuneError) -> "typer.Exit":  # noqa: F821
    err_console.print(f"[bold red]Error:[/] {exc.render()}", markup=True, soft_wrap=True)
    return SystemExit(exc.exit_code)


def run_app(app: Any) -> None:
    """Run the Typer app: domain errors -> 'Error: ...' + exit code; no tracebacks.

    Typer's standalone mode already turns usage errors into exit 2 and `typer.Exit(n)` into n;
    what reaches us is a stage's TrajtuneError (exit 1 or 2) or an interrupt.
    """
    try:
        app(prog_name="trajtune")
    except TrajtuneError as exc:
        raise fail(exc)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise SystemExit(130)
