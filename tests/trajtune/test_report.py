"""evaluate's report: the unweighted mean over categories and the per-category table of both models."""
from trajtune.report import compare, metrics, render_markdown


def pred(tid, passed, kind="calls"):
    return {"task_id": tid, "pass": passed, "kind": kind, "calls": [{"name": "f"}], "valid_json": True,
            "tool_name_correct": passed, "argument_accuracy": 1.0 if passed else 0.0, "hallucinated": False,
            "generated_tokens": 5, "latency_s": 0.1, "truncated": False, "reason": "ok" if passed else "wrong_tool"}


def task(tid, cat):
    return {"id": tid, "metadata": {"category": cat}, "expected": {"calls": [{"name": "f", "arguments": {}}]}}


def test_the_mean_over_categories_weighs_each_category_once():
    tasks = {f"a{i}": task(f"a{i}", "big") for i in range(8)} | {"b0": task("b0", "small"), "b1": task("b1", "small")}
    base = [pred(f"a{i}", True) for i in range(8)] + [pred("b0", False), pred("b1", False)]
    tuned = [pred(f"a{i}", i < 4) for i in range(8)] + [pred("b0", True), pred("b1", True)]
    mb, mt = metrics(base, tasks), metrics(tuned, tasks)
    assert mb["pass_rate"] == 0.8 and mb["category_mean_pass_rate"] == 0.5  # 8/10 pooled, (1.0 + 0.0) / 2
    assert mt["pass_rate"] == 0.6 and mt["category_mean_pass_rate"] == 0.75  # (0.5 + 1.0) / 2
    report = {"tasks_file": "t.jsonl", "tasks": 10, "ready_threshold": 0.85,
              "models": {"baseline": {"model": "b", "backend": "x", "metrics": mb},
                         "tuned": {"model": "t", "backend": "x", "metrics": mt}},
              "comparison": compare(base, tuned, 0.85)}
    md = render_markdown(report)
    assert "| big | 8 | 100.0% | 50.0% |" in md and "| small | 2 | 0.0% | 100.0% |" in md
    assert "| **mean over categories** | | 50.0% | 75.0% |" in md
    assert "| pass rate, mean over categories | 50.0% | 75.0% |" in md


def test_one_category_has_no_mean_row_value():
    tasks = {"a": task("a", "only")}
    assert metrics([pred("a", True)], tasks)["category_mean_pass_rate"] is None
