"""Hostile payloads in a live source: convert --from redis under the network guard reaches only
the server the user named (loopback here), and payloads that carry a remote $ref, nest too deep
or are not JSON are rejects naming their key; the one good payload still converts."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.live import start_redis  # noqa: E402

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'trajtune[redis]')")


def test_redis_payloads_cannot_reach_the_network_or_end_the_run(tt, tmp_path):
    proc, port = start_redis(tmp_path)
    try:
        r = redis.Redis(port=port)
        good = {"interaction_id": "ok", "timestamp": 1_796_000_000, "query": "Where is my parcel?",
                "answer": "It arrives tomorrow.", "quality_scores": {"overall": 0.9}}
        payloads = {
            "ok": json.dumps(good),
            "deep": "[" * 5000 + "]" * 5000,
            "remote": json.dumps({**good, "interaction_id": "remote", "query": {"$ref": "http://198.51.100.7/x"}}),
            "torn": '{"interaction_id": "torn", "query": "',
        }
        for k, v in payloads.items():
            r.set(f"interaction:{k}", v)
            r.zadd("interactions:high_quality", {k: 1_796_000_000})
        res = tt("convert", "--from", "redis", f"redis://127.0.0.1:{port}/0", "-o", tmp_path / "out.jsonl", "--json")
        assert res.code == 0, res.err
        s = json.loads(res.out)
        assert s["converted"] == 1, s
        assert s["rejected"] == {"payload is not JSON": 2, "query empty": 1}
        rejects = [json.loads(x) for x in Path(s["rejects"]).read_text().splitlines()]
        assert sorted(x["source"] for x in rejects) == ["interaction:deep", "interaction:remote", "interaction:torn"]
    finally:
        proc.terminate()
        proc.wait(10)
