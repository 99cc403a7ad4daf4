"""What every command shares: error translation to exit codes, consoles, config loading."""
from __future__ import annotations

import sys
from typing import Any

from trajtune.console import err_console
from trajtune.errors import TrajtuneError


def fail(exc: TrajtuneError) -> "typer.Exit":  # noqa: F821
    from rich.markup import escape

    err_console.print(f"[bold red]Error:[/] {escape(exc.render())}", markup=True, soft_wrap=True)
    return SystemExit(exc.exit_code)


def _terminate(signum: int, frame: Any) -> None:
    err_console.print("Interrupted (SIGTERM): stopping; partial outputs are removed.")
    raise KeyboardInterrupt  # unwinds like Ctrl-C: temp files are removed, exit 130


def run_app(app: Any, prog_name: str = "trajtune") -> None:
    """Run the Typer app: domain errors -> 'Error: ...' + exit code; no tracebacks.

    Typer's standalone mode already turns usage errors into exit 2 and `typer.Exit(n)` into n;
    what reaches us is a stage's TrajtuneError (exit 1 or 2), an interrupt (Ctrl-C or SIGTERM:
    exit 130), or a bug: that is one line naming the exception (exit 1), and the traceback only
    with TRAJTUNE_DEBUG=1.
    """
    import os
    import signal

    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)  # training stages install their own handler
    except ValueError:  # not the main thread (embedded use)
        pass
    try:
        app(prog_name=prog_name)
    except TrajtuneError as exc:
        raise fail(exc)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise SystemExit(130)
    except RecursionError:
        err_console.print("[bold red]Error:[/] the input is nested too deeply to process", soft_wrap=True)
        raise SystemExit(1)
    except MemoryError:
        err_console.print("[bold red]Error:[/] out of memory", soft_wrap=True)
        raise SystemExit(1)
    except Exception as exc:
        if os.environ.get("TRAJTUNE_DEBUG"):
            raise
        from rich.markup import escape

        text = escape(" ".join(str(exc).split())[:300])
        err_console.print(f"[bold red]Error:[/] internal error ({type(exc).__name__}: {text}); this is a bug in "
                          "trajtune: please report it (TRAJTUNE_DEBUG=1 shows the traceback)", markup=True,
                          soft_wrap=True, highlight=False)
        raise SystemExit(1)
    finally:
        if previous is not None:  # embedded use (tests, notebooks): leave the caller's handler as it was
            signal.signal(signal.SIGTERM, previous)
