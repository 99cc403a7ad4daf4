"""What every command shares: error translation to exit codes, consoles, config loading."""
from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from trajtune.errors import TrajtuneError

# Progress and messages go to stderr, so stdout stays free for data ('-') and --json summaries.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def fail(exc: TrajtuneError) -> "typer.Exit":  # noqa: F821
    err_console.print(f"[bold red]Error:[/] {exc.render()}", markup=True, soft_wrap=True)
    return SystemExit(exc.exit_code)


def run_app(app: Any) -> None:
    """Run the Typer app: domain errors -> 'Error: ...' + exit code; usage errors -> 2; no tracebacks."""
    try:
        app(standalone_mode=False)
    except TrajtuneError as exc:
        raise fail(exc)
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        raise SystemExit(130)
    except click.exceptions.ClickException as exc:  # usage errors
        exc.show()
        raise SystemExit(2)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise SystemExit(130)
    except BrokenPipeError:
        try:
            sys.stdout.close()
        except Exception:
            pass
        raise SystemExit(0)
