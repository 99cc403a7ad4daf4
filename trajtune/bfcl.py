"""The Berkeley Function Calling Leaderboard's data, read from its PyPI wheel.

BFCL ships its questions in the ``bfcl-eval`` wheel (``bfcl_eval/data/BFCL_v4_<category>.json``,
JSON lines despite the name) and the acceptable answers beside them
(``bfcl_eval/data/possible_answer/BFCL_v4_<category>.json``, also JSON lines). Its dependencies
are heavy and pinned, so it is never installed: :func:`wheel_path` fetches the one wheel with
``pip download --no-deps`` into ``$TRAJTUNE_CACHE/wheels`` (once; no network while it is there)
and the files are read from it as a zip. BFCL is evaluation data: convert it to task records
(``trajtune convert --from bfcl --to task simple_python -o ...``), never train on it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trajtune.errors import ConfigError, DataError, UsageError

VERSION = "2026.3.23"
WHEEL = f"bfcl-eval=={VERSION}"
DATA = "bfcl_eval/data"
PREFIX = "BFCL_v4_"

# Every category file of the wheel (bfcl_eval/data/BFCL_v4_<category>.json).
CATEGORIES = (
    "simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
    "irrelevance", "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
    "live_irrelevance", "live_relevance", "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
    "multi_turn_long_context", "memory", "web_search", "format_sensitivity",
)
# Categories whose right answer is no call at all.
NO_CALL = ("irrelevance", "live_irrelevance")
# Categories the wheel has no possible_answer file for.
NO_ANSWERS = NO_CALL + ("live_relevance", "format_sensitivity")


def _offline() -> bool:
    return os.environ.get("TRAJTUNE_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def cached_wheel() -> Path | None:
    """The bfcl-eval wheel when it is already in the cache (never downloads)."""
    from trajtune.models import cache_dir

    found = sorted((cache_dir() / "wheels").glob(f"bfcl_eval-{VERSION}-*.whl"))
    return found[0] if found else None


def wheel_path() -> Path:
    """The cached bfcl-eval wheel, downloaded (no dependencies) on first use."""
    from trajtune.models import cache_dir

    wheels = cache_dir() / "wheels"
    pattern = f"bfcl_eval-{VERSION}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    if _offline():
        raise ConfigError(f"the {WHEEL} wheel is not in {wheels} and TRAJTUNE_OFFLINE is set",
                          hint=f"pip download --no-deps {WHEEL} -d {wheels}")
    wheels.mkdir(parents=True, exist_ok=True)
    # downloaded into a private folder, then moved: a concurrent run never reads half a wheel
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".bfcl-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(pattern))
        if proc.returncode != 0 or not got:
            raise ConfigError(f"could not download {WHEEL} from PyPI ({proc.stderr.strip()[-300:]})",
                              hint="check your network, or pass the category file and its --answers")
        os.replace(got[0], wheels / got[0].name)
    return sorted(wheels.glob(pattern))[0]


def _check(category: str) -> None:
    if category not in CATEGORIES:
        import difflib

        close = difflib.get_close_matches(category, CATEGORIES, n=1)
        raise UsageError(f"unknown BFCL category '{category}'",
                         hint=f"did you mean '{close[0]}'?" if close else "categories: " + ", ".join(CATEGORIES))


def _members(category: str) -> tuple[str, str]:
    name = f"{PREFIX}{category}.json"
    return f"{DATA}/{name}", f"{DATA}/possible_answer/{name}"


def _open() -> zipfile.ZipFile:
    path = wheel_path()
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"not a readable wheel ({exc})", path=str(path),
                        hint="delete it to download it again") from None


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8").splitlines() if line.strip()]


def category_files(category: str) -> tuple[list[str], list[str]]:
    """(question lines, answer lines) of one category, read from the cached wheel; the answer
    lines are empty for a category without a possible_answer file (irrelevance, ...)."""
    _check(category)
    q, a = _members(category)
    with _open() as zf:
        names = set(zf.namelist())
        if q not in names:
            raise DataError(f"{q} is not in the wheel", path=str(wheel_path()))
        return _lines(zf.read(q)), _lines(zf.read(a)) if a in names else []


def category_path(category: str) -> Path:
    """The category's question file as a file in the cache, its possible_answer file beside it
    (``possible_answer/BFCL_v4_<category>.json``, where BFCL has one), extracted once from the wheel."""
    from trajtune.jsonl import atomic_writer
    from trajtune.models import cache_dir

    _check(category)
    root = cache_dir() / "bfcl" / f"bfcl_eval-{VERSION}"
    q, a = _members(category)
    targets = {q: root / Path(q).name, a: root / "possible_answer" / Path(a).name}
    if targets[q].is_file() and (category in NO_ANSWERS or targets[a].is_file()):
        return targets[q]
    with _open() as zf:
        names = set(zf.namelist())
        if q not in names:
            raise DataError(f"{q} is not in the wheel", path=str(wheel_path()))
        for member, target in targets.items():
            if member in names:
                with atomic_writer(target) as fh:  # a temp file renamed into place: never half a file
                    fh.write(zf.read(member))
    return targets[q]
