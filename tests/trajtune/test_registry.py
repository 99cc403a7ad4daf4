"""The run registry (trajtune/registry.py) on a real SQLite file, written by real processes at once."""
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from trajtune.errors import DataError, UsageError
from trajtune.registry import JOURNAL, Registry

WRITERS = 6
RUNS_EACH = 40
PROMOTES_EACH = 5

# one writer process: waits for the start signal, then registers its runs and promotions as fast as it can
WRITER = """
import json, os, sys, time
from pathlib import Path
from trajtune.registry import Registry
db, go, me, n, promotes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    m = {"schema": "trajtune.manifest/1", "run_id": f"w{me}-r{i:03d}", "stage": "train-sft", "status": "finished",
         "started_at": f"2026-12-01T00:00:{i:02d}", "metrics": {"train_loss": me + i / 1000}, "parents": [],
         "config": {"model": "default"}, "blob": "x" * 2000}
    with Registry(db) as reg:  # a new connection each time, as every finishing stage opens one
        reg.upsert(m, Path(db).parent / f"w{me}-{i}.manifest.json")
with Registry(db) as reg:
    for i in range(promotes):
        reg.promote("shared", f"w{me}-r{i:03d}", f"/models/w{me}/{i}", "default", "lora", None)
"""


def test_concurrent_writers_in_real_processes_lose_no_rows_and_never_corrupt_it(tmp_path):
    db, go = tmp_path / "runs" / "registry.sqlite", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(go), str(w), str(RUNS_EACH), str(PROMOTES_EACH)],
                              stderr=subprocess.PIPE, text=True) for w in range(WRITERS)]
    time.sleep(1.0)  # let every interpreter start and wait at the line
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Registry(db) as reg:
        rows = reg.list()
        assert len(rows) == WRITERS * RUNS_EACH  # none lost
        for r in rows:  # each row whole: its manifest parses and matches its columns
            m = reg.get(r["run_id"])
            w, i = r["run_id"][1:].split("-r")
            assert m["metrics"] == r["metrics"] == {"train_loss": int(w) + int(i) / 1000} and len(m["blob"]) == 2000
        history = reg.history("shared")
        # every promotion kept, each its own version, numbered without a gap; the last one is active
        assert sorted(h["version"] for h in history) == sorted(f"v{k}" for k in range(1, WRITERS * PROMOTES_EACH + 1))
        assert reg.active("shared")["id"] == max(h["id"] for h in history)
    lines = (db.parent / JOURNAL).read_text().splitlines()
    assert len(lines) == WRITERS * PROMOTES_EACH and all(json.loads(line)["action"] == "promote" for line in lines)


def test_promote_numbers_versions_and_rollback_restores_the_previous_one(tmp_path):
    with Registry(tmp_path / "r.sqlite") as reg:
        assert reg.promote("support", "run-a", "/m/a", "default", "lora", None)["version"] == "v1"
        assert reg.promote("support", "run-b", "/m/b", "default", "lora", "2025-q4")["version"] == "2025-q4"
        with pytest.raises(UsageError, match="already has a version '2025-q4'"):
            reg.promote("support", "run-c", "/m/c", "default", "lora", "2025-q4")
        assert reg.promote("billing", "run-c", "/m/c", "default", "dpo", None)["version"] == "v1"  # per agent
        retired, live = reg.rollback("support")
        assert (retired["version"], live["version"], live["run_id"]) == ("2025-q4", "v1", "run-a")
        assert reg.active("support")["run_id"] == "run-a"
        with pytest.raises(DataError, match="nothing promoted before it"):
            reg.rollback("support")
        assert reg.active("billing")["run_id"] == "run-c"


def test_promotions_survive_a_lost_database_through_their_journal(tmp_path):
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        reg.promote("support", "run-a", "/m/a", "default", "lora", None)
        reg.promote("support", "run-b", "/m/b", "default", "lora", None)
        reg.rollback("support")
    for p in tmp_path.glob("r.sqlite*"):
        p.unlink()
    with Registry(db) as reg:
        assert reg.active("support") is None
        assert reg.replay([tmp_path / JOURNAL]) == 3
        assert reg.active("support")["run_id"] == "run-a"
        assert [h["rolled_back_at"] is not None for h in reg.history("support")] == [False, True]


def test_a_file_that_is_not_a_database_is_an_error_naming_the_fix(tmp_path):
    bad = tmp_path / "registry.sqlite"
    bad.write_text("not sqlite at all, but long enough to be read as a header " * 10)
    with pytest.raises(DataError, match="not a usable registry") as exc:
        Registry(bad)
    assert "trajtune runs reindex" in exc.value.render()
    with pytest.raises(UsageError, match="no registry at"):
        Registry(tmp_path / "missing.sqlite", create=False)
