"""sharegpt -> sft with real tool calls and tool messages; chosen/rejected rows -> preference."""


def test_function_calls_and_observations_become_calls_and_tool_messages(convert):
    summary, recs, _ = convert("sharegpt.json", source_format="sharegpt")
    assert summary["converted"] == 3
    weather = recs[0]
    assert weather["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
    call = weather["messages"][1]
    assert call == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert weather["messages"][2] == {"role": "tool", "content": '{"temp": 18}', "tool_call_id": "call_1"}


def test_thought_then_parallel_calls_with_string_and_double_encoded_arguments(convert):
    _, recs, _ = convert("sharegpt.json")
    msgs = recs[1]["messages"]
    assert msgs[2]["content"] == "Let me check both."
    assert [c["function"]["arguments"] for c in msgs[2]["tool_calls"]] == [{"city": "Oslo", "days": 2}, {"city": "Oslo"}]
    assert [(m["tool_call_id"], m["content"]) for m in msgs[3:5]] == [("call_1", "rain"), ("call_2", "14:00")]
    assert recs[1]["metadata"] == {"source": "sharegpt", "extra": {"source_dataset": "extra key"}}


def test_broken_conversations_are_rejected_with_reasons(convert):
    summary, _, rejects = convert("sharegpt.json")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "function_call not valid JSON"), (5, "tool result without a matching call"),
        (6, "arguments not a JSON object"), (7, "empty assistant turn")]


def test_chosen_and_rejected_rows_become_preferences_and_identical_pairs_are_rejected(convert):
    summary, recs, rejects = convert("sharegpt_dpo.json", to="preference")
    assert summary["converted"] == 1 and summary["rejected"] == {"identical chosen and rejected": 1}
    rec = recs[0]
    assert rec["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "Paris."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "Lyon."}]
