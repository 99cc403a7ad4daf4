"""The source formats `trajtune convert --from` knows, and auto-detection among them."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from trajtune.errors import UsageError

# name -> module; detection tries them in this order (most specific shapes first).
FORMATS = {
    "trajtune": "trajtune.converters.ours",
    "bfcl": "trajtune.converters.bfcl",
    "interactions": "trajtune.converters.interactions",
    "tool-logs": "trajtune.converters.tool_logs",
    "traces": "trajtune.converters.traces",
    "otel": "trajtune.converters.otel",
    "atif": "trajtune.converters.atif",
    "critiques": "trajtune.converters.critiques",
    "hh-rlhf": "trajtune.converters.hh_rlhf",
    "hermes": "trajtune.converters.hermes",
    "sharegpt": "trajtune.converters.sharegpt",
    "cold-start": "trajtune.converters.cold_start",
    "trl": "trajtune.converters.trl",
    "openai": "trajtune.converters.openai",
    "alpaca": "trajtune.converters.alpaca",
}
# live sources: IN names a server, not a file (never auto-detected, never voted on)
LIVE = {
    "phoenix": "trajtune.converters.phoenix",
    "redis": "trajtune.converters.redis_logs",
}


def live(name: str) -> ModuleType | None:
    """The module of a live source (``--from phoenix`` / ``--from redis``), else None."""
    return import_module(LIVE[name]) if name in LIVE else None


def get(name: str) -> ModuleType:
    if name in LIVE:
        return import_module(LIVE[name])
    if name not in FORMATS:
        import difflib

        close = difflib.get_close_matches(name, list(FORMATS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "formats: " + ", ".join([*FORMATS, *LIVE])
        raise UsageError(f"--from: unknown format '{name}'", hint=hint)
    return import_module(FORMATS[name])


def resolve_input(fmt: str, inp: str) -> str:
    """IN as a file to read: a format may name inputs that are not files (bfcl: ``bfcl:<category>``,
    or with ``--from bfcl`` a bare category name, extracted from the cached bfcl-eval wheel)."""
    if fmt == "bfcl" or (fmt == "auto" and inp.startswith("bfcl:")):
        return get("bfcl").resolve_input(inp)
    return inp


def side_inputs(fmt: str, cfg: Any, inp: str) -> list[str]:
    """Other files a conversion of ``inp`` reads (bfcl: its possible_answer file), for the
    up-to-date check of a re-run."""
    if fmt in ("bfcl", "auto"):
        return get("bfcl").side_inputs(cfg, inp)
    return []


def detect(objs: list[Any], path: str) -> str:
    """The one format whose ``detect`` accepts most of the first objects; else a usage error."""
    if not objs:
        from trajtune.errors import DataError

        raise DataError("no JSON objects to convert", path=path)
    from trajtune.converters.common import Ambiguous

    votes: dict[str, int] = {}
    unsure: dict[tuple[str, ...], tuple[int, str]] = {}  # formats -> (objects, why) for Ambiguous answers
    for obj in objs:
        for name in FORMATS:
            try:
                hit = get(name).detect(obj)
            except Ambiguous as a:
                n, _ = unsure.get(a.names, (0, a.why))
                unsure[a.names] = (n + 1, a.why)
                break
            except Exception:  # a malformed row is no vote (its converter rejects it later)
                hit = False
            if hit:
                votes[name] = votes.get(name, 0) + 1
                break  # first (most specific) match wins for this object
    for names, (n, why) in unsure.items():
        if n >= max(votes.values(), default=0):
            raise UsageError(f"input format is ambiguous ({' or '.join(names)}): {why}", path=path,
                             hint="pass " + " or ".join(f"--from {x}" for x in names))
    if not votes:
        raise UsageError("cannot tell the input format", path=path,
                         hint="pass --from with one of: " + ", ".join(FORMATS))
    best = max(votes.values())
    winners = [n for n, v in votes.items() if v == best]
    if len(winners) > 1:
        raise UsageError(f"input format is ambiguous ({' or '.join(winners)})", path=path, hint="pass --from")
    return winners[0]
