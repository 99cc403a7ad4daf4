"""What a stage is: one ``Config`` dataclass and one ``run(cfg) -> summary``.

Every command of trajtune is a module ``trajtune.scripts.<command>`` exposing ``STAGE`` (or
``STAGES``, for a command with subcommands): the config class is the only declaration of its
options (``trajtune.config.field``), and the command line, ``--config`` YAML, ``--set`` keys,
``--help`` and the script form (``python -m trajtune.scripts.<command>``) are all generated from
it by ``trajtune.cli.command``. ``run`` does the work and returns a JSON-able summary; its
``exit_code`` key (default 0) is the process exit code (1: bad data or a failed run, 130:
interrupted). ``render(summary, cfg)`` prints the human report on stderr.

``execute(cfg)`` is how the CLI (and the script form) runs a stage: ``run(cfg)`` with its lineage
manifest written beside the output and the run registered (:mod:`trajtune.lineage`,
:mod:`trajtune.registry`), once for every stage. ``lineage(cfg, summary) -> dict`` is the
stage's optional hook for what only it knows (which folder the manifest describes, its outputs,
headline metrics, the model it made).

This module is core: it imports nothing of the CLI, so stages can be imported, called and tested
as plain functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Stage:
    name: str  # the command, e.g. "train-sft" or "generate trajectories"
    config: type
    run: Callable[[Any], dict]
    help: str
    example: str
    render: Optional[Callable[[dict, Any], None]] = None
    lineage: Optional[Callable[[Any, dict], dict]] = None

    def execute(self, cfg: Any) -> dict:
        """``run(cfg)``, then its manifest and registry entry (a stage without an output has none)."""
        from trajtune.lineage import Recorder

        recorder = Recorder(self, cfg)
        summary = self.run(cfg)
        recorder.finish(summary)
        return summary

    @property
    def command(self) -> str:
        return self.name.split()[-1]
