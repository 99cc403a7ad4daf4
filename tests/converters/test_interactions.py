"""Interaction logs -> sft, preference (by normalised query) and group records, with filters."""
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"


def test_sft_keeps_good_answers_and_counts_what_it_leaves_out(convert):
    summary, recs, rejects = convert("interactions.jsonl", source_format="interactions")
    assert [r["id"] for r in recs] == ["i1", "i3", "i5", "i6", "i9"]
    assert recs[0]["messages"] == [{"role": "user", "content": "How do I reset my password?"},
                                   {"role": "assistant", "content": "Go to Settings > Security > Reset."}]
    assert recs[0]["metadata"]["quality"] == 0.95 and recs[0]["metadata"]["agent"] == "support"
    assert summary["skipped"] == {"error_occurred": 1, "quality below min_quality": 2}
    assert [(r["line"], r["reason"]) for r in rejects] == [(8, "answer empty"), (10, "quality_scores.overall missing or not a number")]


def test_filters_by_agent_type_and_days_back(convert):
    _, recs, _ = convert("interactions.jsonl", agent_types=["billing"])
    assert [r["id"] for r in recs] == ["i5", "i6"]
    summary, recs, _ = convert("interactions.jsonl", days_back=30, as_of="2026-11-22T00:00:00Z")
    assert "i9" not in [r["id"] for r in recs] and summary["skipped"]["older than days_back"] == 1


def test_preference_pairs_best_and_worst_answer_to_the_same_normalised_query(convert):
    summary, recs, _ = convert("interactions.jsonl", to="preference")
    assert len(recs) == 1
    pref = recs[0]
    assert pref["id"] == "i1-vs-i2"  # "how do I reset my  password?" is the same query
    assert pref["chosen"][0]["content"] == "Go to Settings > Security > Reset."
    assert pref["rejected"][0]["content"] == "No idea."
    assert summary["skipped"]["quality difference below min_quality_diff"] == 1  # i5 vs i6: 0.08 apart


def test_groups_carry_quality_as_reward(convert):
    summary, recs, _ = convert("interactions.jsonl", to="group", group_size=3)
    assert len(recs) == 1
    assert [r["reward"] for r in recs[0]["responses"]] == [0.95, 0.3, 0.85]
    assert recs[0]["metadata"]["member_ids"] == ["i1", "i2", "i3"]
    summary, recs, _ = convert("interactions.jsonl", to="group")  # default size 4
    assert len(recs) == 1 and len(recs[0]["responses"]) == 4


def test_grouping_holds_keys_and_offsets_not_records(tmp_path):
    """An 8 MB log grouped into preferences peaks far below the file size (records are re-read)."""
    import tracemalloc

    import orjson

    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    big = tmp_path / "big.jsonl"
    pad = "x" * 8000
    with open(big, "wb") as fh:
        for i in range(1000):
            fh.write(orjson.dumps({"interaction_id": f"i{i}", "query": f"question {i // 2}", "answer": f"{i} {pad}",
                                   "quality_scores": {"overall": 0.9 if i % 2 else 0.4}}) + b"\n")
    assert big.stat().st_size > 8_000_000

    def cfg(inp, out):
        return config.build(Config, None, {"input": str(inp), "output": str(out), "to": "preference"})

    run_convert(cfg(FIXTURES / "interactions.jsonl", tmp_path / "warm.jsonl"))  # imports, compiled schemas
    big_cfg = cfg(big, tmp_path / "pref.jsonl")
    tracemalloc.start()
    try:
        summary = run_convert(big_cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["converted"] == 500
    assert peak < 1_500_000, f"peak {peak / 1e6:.1f} MB"
