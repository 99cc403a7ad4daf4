"""Hermes/Qwen tagged text -> sft with real tool calls."""


def test_tagged_calls_and_responses_become_calls_and_tool_messages(convert):
    summary, recs, rejects = convert("hermes.jsonl", source_format="hermes")
    assert summary["converted"] == 2
    h1 = recs[0]
    assert h1["tools"][0]["function"]["name"] == "get_stock"
    assert "get_stock" not in h1["messages"][0]["content"]  # the schema block left the system text
    assert h1["messages"][2]["tool_calls"][0]["function"] == {"name": "get_stock", "arguments": {"symbol": "AAPL"}}
    assert h1["messages"][3]["role"] == "tool" and h1["messages"][3]["content"].startswith('{"name": "get_stock"')


def test_text_transcripts_with_parallel_calls_are_parsed(convert):
    _, recs, _ = convert("hermes.jsonl")
    msgs = recs[1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert msgs[2]["content"] == "Checking both."
    assert [c["function"]["arguments"]["symbol"] for c in msgs[2]["tool_calls"]] == ["MSFT", "AAPL"]
    assert [m["content"] for m in msgs[3:5]] == ['{"price": 410}', '{"price": 190}']


def test_unparsable_call_blocks_are_rejected(convert):
    _, _, rejects = convert("hermes.jsonl")
    assert [(r["line"], r["reason"], r["detail"]) for r in rejects] == [(3, "unparsable <tool_call> block", "unparsable_json")]
