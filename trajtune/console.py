"""The console every stage prints to: progress and reports on stderr, so stdout stays free for
data ('-') and --json summaries."""
from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True, highlight=False)
