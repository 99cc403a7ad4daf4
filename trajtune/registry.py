"""The run registry: an SQLite index of the manifests, and which adapter is active for which agent.

One database file (stdlib ``sqlite3``), ``runs/registry.sqlite`` by default, ``TRAJTUNE_REGISTRY``
or ``--registry`` elsewhere (``TRAJTUNE_REGISTRY=off`` turns registering off). Every stage
registers its run when it finishes (:func:`register_quietly`, called after its manifest is
written); ``trajtune runs reindex DIR`` rebuilds the runs from the manifests under DIR, which are
the truth: the database is an index.

Concurrent writers (two trainings finishing at once, every process of a distributed run) are
safe: WAL mode, a busy timeout, and every write one ``BEGIN IMMEDIATE`` transaction; a row is
written whole or not at all (``tests/trajtune/test_registry.py`` runs real processes at once).

Promotions (the design's activate / get-active / rollback) live in the ``promotions`` table, with
their history, and are also appended to ``promotions.jsonl`` beside the database (one line per
promote or rollback, fsync'd), so ``reindex`` restores them too.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from trajtune.errors import ConfigError, DataError, UsageError

ENV = "TRAJTUNE_REGISTRY"
DEFAULT = Path("runs") / "registry.sqlite"
JOURNAL = "promotions.jsonl"
BUSY_TIMEOUT_S = 60.0
OFF = ("", "off", "none", "0")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    wall_time_s REAL,
    peak_mb REAL,
    output TEXT,
    manifest TEXT NOT NULL,
    base_model TEXT,
    method TEXT,
    metrics TEXT,
    parents TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_stage ON runs(stage);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    model_path TEXT NOT NULL,
    base_model TEXT,
    method TEXT,
    promoted_at TEXT NOT NULL,
    rolled_back_at TEXT,
    UNIQUE(agent, version)
);
"""


def default_path() -> Optional[Path]:
    """The registry stages register in: ``TRAJTUNE_REGISTRY``, else ``runs/registry.sqlite``; None when off."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    return DEFAULT


def resolve(path: Optional[str]) -> Path:
    """The registry a ``runs`` command reads: ``--registry``, else the default (which must be on)."""
    if path:
        return Path(path).expanduser()
    p = default_path()
    if p is None:
        raise UsageError(f"{ENV} is off: no registry to read", hint="pass --registry PATH")
    return p


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Registry:
    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UsageError(f"no registry at {self.path}",
                             hint="run a stage first, or rebuild it from the manifests: trajtune runs reindex runs")
        if self.path.exists() and not self.path.is_file():
            raise UsageError(f"registry {self.path} is not a file", hint="pass --registry FILE.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._retry(lambda: self.db.execute("PRAGMA journal_mode = WAL"))
            self.db.execute("PRAGMA synchronous = NORMAL")
            with self.write():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    self.db.execute(stmt)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable registry ({exc})",
                            hint="move it away and rebuild it: trajtune runs reindex runs") from None

    def _retry(self, fn: Any) -> Any:
        """Switching to WAL takes a lock for a moment; a writer that finds it taken waits and retries."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def write(self) -> "_Tx":
        return _Tx(self)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ runs

    def upsert(self, manifest: dict, manifest_file: str | os.PathLike) -> None:
        with self.write():
            self._upsert(manifest, manifest_file)

    def _upsert(self, m: dict, manifest_file: str | os.PathLike) -> None:
        peak = m.get("peak_memory") or {}
        model = m.get("model") or {}
        base = model.get("base") or (m.get("config") or {}).get("model")
        parents = sorted({p["run_id"] for p in m.get("parents") or [] if p.get("run_id")})
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m["run_id"], m.get("stage", "?"), m.get("status", "finished"), m.get("started_at"), m.get("finished_at"),
             m.get("wall_time_s"), max([v for v in peak.values() if isinstance(v, (int, float))], default=None),
             m.get("output"), str(Path(manifest_file).resolve()), base if isinstance(base, str) else None,
             model.get("method"), json.dumps(m.get("metrics") or {}), json.dumps(parents), json.dumps(m)))

    def get(self, run_id: str) -> Optional[dict]:
        row = self.db.execute("SELECT data, manifest FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row["data"]), "_manifest": row["manifest"]}

    def find(self, ref: str) -> dict:
        """A run by id, unique id prefix, or path (an output folder or file, or a manifest)."""
        got = self.get(ref)
        if got is not None:
            return got
        p = Path(ref)
        if p.exists():
            from trajtune import lineage

            cand = p if lineage.is_manifest_name(p.name) and p.is_file() else lineage.manifest_path(p)
            m = lineage.read_manifest(cand) if cand.is_file() else None
            if m is None:
                raise UsageError(f"{ref}: no run manifest there ({cand} is missing)",
                                 hint="name a run id from `trajtune runs list`, or a folder a stage wrote")
            return self.get(m["run_id"]) or {**m, "_manifest": str(cand.resolve())}
        rows = self.db.execute("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id",
                               (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
        if len(rows) == 1:
            return self.get(rows[0]["run_id"])  # type: ignore[return-value]
        if rows:
            raise UsageError(f"run {ref!r} is ambiguous: {len(rows)} runs start with it ({rows[0]['run_id']}, "
                             f"{rows[1]['run_id']}, ...)", hint="give more of the run id")
        raise UsageError(f"no run {ref!r} in {self.path}", hint="see `trajtune runs list`, or rebuild the index: "
                                                               "trajtune runs reindex runs")

    def list(self, *, stage: Optional[str] = None, agent: Optional[str] = None, base_model: Optional[str] = None,
             status: Optional[str] = None) -> list[dict]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if stage:
            sql += " AND stage = ?"
            args.append(stage)
        if status:
            sql += " AND status = ?"
            args.append(status)
        if base_model:
            sql += " AND base_model = ?"
            args.append(base_model)
        if agent:
            sql += " AND run_id IN (SELECT run_id FROM promotions WHERE agent = ?)"
            args.append(agent)
        rows = self.db.execute(sql + " ORDER BY started_at, run_id", args).fetchall()
        out = []
        for r in rows:
            d = {k: r[k] for k in r.keys() if k != "data"}
            d["metrics"], d["parents"] = json.loads(d["metrics"] or "{}"), json.loads(d["parents"] or "[]")
            out.append(d)
        return out

    def remove_missing(self, under: Path, keep: set[str]) -> int:
        """Drop runs whose manifest lies under ``under`` but was not found there (reindex)."""
        root = str(under.resolve())
        gone = [r["run_id"] for r in self.db.execute("SELECT run_id, manifest FROM runs").fetchall()
                if (r["manifest"] == root or r["manifest"].startswith(root + os.sep)) and r["run_id"] not in keep]
        for rid in gone:
            self.db.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
        return len(gone)

    # ------------------------------------------------------------------ promotions

    def history(self, agent: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM promotions WHERE agent = ? ORDER BY id", (agent,)).fetchall()
        return [dict(r) for r in rows]

    def active(self, agent: str) -> Optional[dict]:
        row = self.db.execute("SELECT * FROM promotions WHERE agent = ? AND rolled_back_at IS NULL ORDER BY id DESC LIMIT 1",
                              (agent,)).fetchone()
        return dict(row) if row else None

    def promote(self, agent: str, run_id: str, model_path: str, base_model: Optional[str], method: Optional[str],
                version: Optional[str]) -> dict:
        """Make ``run_id``'s model the active version of ``agent`` (numbered v1, v2, ... unless given)."""
        with self.write():
            if version is None:
                n = self.db.execute("SELECT COUNT(*) FROM promotions WHERE agent = ?", (agent,)).fetchone()[0]
                version = f"v{n + 1}"
                while self.db.execute("SELECT 1 FROM promotions WHERE agent = ? AND version = ?", (agent, version)).fetchone():
                    n += 1
                    version = f"v{n + 1}"
            elif self.db.execute("SELECT 1 FROM promotions WHERE agent = ? AND version = ?", (agent, version)).fetchone():
                raise UsageError(f"agent {agent!r} already has a version {version!r}",
                                 hint="give another --version, or leave it out to number it automatically")
            entry = {"agent": agent, "version": version, "run_id": run_id, "model_path": model_path,
                     "base_model": base_model, "method": method, "promoted_at": _now(), "rolled_back_at": None}
            self._promote(entry)
        self._journal({"action": "promote", **entry})
        return self.active(agent)  # type: ignore[return-value]

    def _promote(self, e: dict) -> None:
        self.db.execute("INSERT INTO promotions (agent, version, run_id, model_path, base_model, method, promoted_at, "
                        "rolled_back_at) VALUES (?,?,?,?,?,?,?,?)",
                        (e["agent"], e["version"], e["run_id"], e["model_path"], e["base_model"], e["method"],
                         e["promoted_at"], e.get("rolled_back_at")))

    def rollback(self, agent: str) -> tuple[dict, dict]:
        """Retire the active version; the one promoted before it becomes active. (retired, now active)."""
        with self.write():
            live = self.db.execute("SELECT * FROM promotions WHERE agent = ? AND rolled_back_at IS NULL ORDER BY id DESC",
                                   (agent,)).fetchall()
            if not live:
                raise DataError(f"agent {agent!r} has no active version", hint=f"promote one: trajtune runs promote RUN --agent {agent}")
            if len(live) < 2:
                raise DataError(f"agent {agent!r} has only {live[0]['version']} active and nothing promoted before it "
                                "to roll back to", hint=f"promote another run: trajtune runs promote RUN --agent {agent}")
            at = _now()
            self.db.execute("UPDATE promotions SET rolled_back_at = ? WHERE id = ?", (at, live[0]["id"]))
        self._journal({"action": "rollback", "agent": agent, "version": live[0]["version"], "at": at})
        return {**dict(live[0]), "rolled_back_at": at}, dict(live[1])

    def _journal(self, entry: dict) -> None:
        """Append one promote/rollback line beside the database (O_APPEND: whole lines, fsync'd)."""
        line = (json.dumps(entry) + "\n").encode("utf-8")
        fd = os.open(self.path.parent / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replay(self, journals: Iterable[Path]) -> int:
        """Rebuild the promotions from journal files (reindex); returns the events applied."""
        events = []
        for j in journals:
            for line in j.read_text("utf-8").splitlines():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a torn last line
        n = 0
        self.db.execute("DELETE FROM promotions")
        for e in events:
            if e.get("action") == "promote" and self.db.execute(
                    "SELECT 1 FROM promotions WHERE agent = ? AND version = ?", (e["agent"], e["version"])).fetchone() is None:
                self._promote(e)
                n += 1
            elif e.get("action") == "rollback":
                self.db.execute("UPDATE promotions SET rolled_back_at = ? WHERE agent = ? AND version = ?",
                                (e["at"], e["agent"], e["version"]))
                n += 1
        return n


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error): one writer at a time, whole rows."""

    def __init__(self, reg: Registry):
        self.reg = reg

    def __enter__(self) -> None:
        self.reg._retry(lambda: self.reg.db.execute("BEGIN IMMEDIATE"))

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.reg._retry(lambda: self.reg.db.execute("COMMIT"))
        else:
            self.reg.db.execute("ROLLBACK")


def register_quietly(manifest: dict, manifest_file: str | os.PathLike) -> bool:
    """Register a finished stage's run in the default registry; a failure is a warning (the manifest
    is written, and ``trajtune runs reindex`` adds it later)."""
    path = default_path()
    if path is None:
        return False
    try:
        with Registry(path) as reg:
            reg.upsert(manifest, manifest_file)
        return True
    except (ConfigError, DataError, OSError, sqlite3.Error) as exc:
        from trajtune.lineage import _warn

        _warn(f"run {manifest.get('run_id')} not registered in {path} ({exc}); its manifest {manifest_file} is "
              f"written: `trajtune runs reindex DIR --registry {path}` adds it later")
        return False
