"""Tool-invocation logs -> sft trajectories with the documented reject reasons and filters."""


def test_a_log_row_becomes_a_call_by_call_trajectory(convert):
    summary, recs, _ = convert("tool_logs.jsonl", source_format="tool-logs")
    assert summary["converted"] == 2
    t1 = recs[0]
    assert t1["id"] == "t1"
    assert [m["role"] for m in t1["messages"]] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert [m["tool_calls"][0]["function"] for m in t1["messages"] if m.get("tool_calls")] == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "convert_temp", "arguments": {"celsius": 18}}]
    assert t1["messages"][-1]["content"] == "64.4 F"
    assert t1["metadata"] == {"source": "tool-logs", "agent": "planner", "difficulty": "medium", "success": True,
                              "success_rate": 0.95, "observations": "missing"}
    t2 = recs[1]  # string sequence, JSON-string parameters, results, percentage rate
    assert [m["content"] for m in t2["messages"] if m["role"] == "tool"] == ["10 hits", "summary"]
    assert t2["metadata"]["success_rate"] == 0.97


def test_bad_rows_get_the_documented_reasons(convert):
    summary, _, rejects = convert("tool_logs.jsonl")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "task_description too short or empty"), (4, "tool_sequence cannot be empty"),
        (5, "tool_sequence and tool_parameters length mismatch"), (6, "expected_result too short or empty"),
        (7, "invalid difficulty_level")]
    assert summary["skipped"] == {"success_label false": 1, "success_rate below quality_threshold": 1,
                                  "tool_sequence length outside min_tool_calls..max_tool_calls": 1}


def test_thresholds_are_options(convert):
    summary, recs, _ = convert("tool_logs.jsonl", quality_threshold=0.4, max_tool_calls=6)
    assert [r["id"] for r in recs] == ["t1", "t2", "t9", "t10"]
    assert summary["skipped"] == {"success_label false": 1}


def test_one_invocation_per_line_is_grouped_by_task_and_ordered_by_step(convert):
    summary, recs, rejects = convert("tool_invocations.jsonl")
    assert summary["from"] == "tool-logs" and [r["id"] for r in recs] == ["job-1", "job-2"]
    job1 = recs[0]["messages"]
    assert [m["tool_calls"][0]["function"]["name"] for m in job1 if m.get("tool_calls")] == ["get_weather", "convert_temp"]
    assert [m["content"] for m in job1 if m["role"] == "tool"] == ['{"celsius":21}', "69.8"]
    assert job1[0]["content"] == "Weather in Lyon in Fahrenheit" and job1[-1]["content"] == "69.8 F"
    assert recs[0]["metadata"]["agent"] == "planner"
    assert [(r["line"], r["reason"]) for r in rejects] == [(4, "task_description too short or empty")]
