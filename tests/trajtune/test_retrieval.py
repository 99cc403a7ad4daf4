"""Retrieval metrics and the paired comparison, on rankings whose answers are known by hand."""
import math

import pytest
from scipy.stats import binomtest

from trajtune.retrieval import compare, score_ranking


def test_metrics_of_one_ranking():
    s = score_ranking(["a", "b", "c", "d"], ["c"])
    assert s["first_relevant_rank"] == 3 and s["hit@1"] is False
    assert s["recall@1"] == 0 and s["recall@5"] == 1 and s["mrr@10"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["ndcg@10"] == pytest.approx(1 / math.log2(4), abs=1e-6)
    two = score_ranking(["x", "a", "y", "b"], ["a", "b"])  # two relevant documents at ranks 2 and 4
    assert two["recall@1"] == 0 and two["recall@5"] == 1 and two["mrr@10"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert two["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal, abs=1e-6)
    far = score_ranking([f"d{i}" for i in range(20)], ["d15"])
    assert far["mrr@10"] == 0 and far["recall@10"] == 0 and far["first_relevant_rank"] == 16


def _p(q, hit, mrr):
    return {"task_id": q, "hit@1": hit, "recall@1": float(hit), "mrr@10": mrr}


def test_paired_comparison_mcnemar_on_hit1_and_bootstrap_on_mrr():
    base = [_p(f"q{i}", i < 3, 1.0 if i < 3 else 0.2) for i in range(20)]
    tuned = [_p(f"q{i}", i < 15 and i != 0, 1.0 if i < 15 and i != 0 else 0.25) for i in range(20)]
    c = compare(base, tuned)
    assert (c["fixed"], c["broken"]) == (12, 1) and c["paired_queries"] == 20
    assert c["mcnemar_p"] == pytest.approx(binomtest(12, 13, 0.5).pvalue) and c["significant"]
    assert c["recall@1_points"] == pytest.approx(100 * (14 - 3) / 20)
    lo, hi = c["mrr@10_diff_ci95"]
    assert 0 < lo <= c["mrr@10_diff"] <= hi
    assert compare(base, base)["mcnemar_p"] == 1.0 and compare(base, base)["mrr@10_diff_ci95"] == [0.0, 0.0]
    assert compare(base, tuned) == c  # seeded: the same interval every time


def _tool(name, desc):
    return {"type": "function", "function": {"name": name, "description": desc,
                                             "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}


def test_a_records_file_as_corpus_ranks_every_tool_any_record_offers(tmp_path):
    """`evaluate TASKS --corpus TASKS` (e.g. BFCL's categories concatenated): each query is ranked
    against the union of all tasks' tools, not only the two its own task offers."""
    import json

    from trajtune.errors import DataError
    from trajtune.retrieval import load_set

    rows = [{"id": f"t{i}", "prompt": [{"role": "user", "content": f"please {v} it"}],
             "tools": [_tool(f"{v}_it", f"{v.capitalize()} it."), _tool("shared", "First spec wins." if i == 0 else "Later.")],
             "expected": {"calls": [{"name": f"{v}_it", "arguments": {"x": ["a"]}}], "order": "strict"}}
            for i, v in enumerate(["open", "close", "move"])]
    rows.append({"id": "none", "prompt": [{"role": "user", "content": "hi"}], "tools": [_tool("wave", "Wave.")],
                 "expected": {"calls": [], "order": "strict"}})
    f = tmp_path / "tasks.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rs = load_set(str(f), corpus=str(f))
    assert set(rs.corpus) == {"open_it", "close_it", "move_it", "shared", "wave"}
    assert "First spec wins." in rs.corpus["shared"]
    assert rs.relevant == {"t0": ["open_it"], "t1": ["close_it"], "t2": ["move_it"]}
    assert rs.skipped == {"no expected call": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "b", "tools": [{"type": "function", "function": {"description": "no name"}}]}) + "\n")
    with pytest.raises(DataError) as err:
        load_set(str(f), corpus=str(bad))
    assert err.value.line == 1
