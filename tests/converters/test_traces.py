"""OpenInference trace exports -> sft (approved spans, sessions), preference, triplets."""
from pathlib import Path

import orjson

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"


def test_sft_comes_from_approved_llm_spans_with_their_tool_calls(convert):
    summary, recs, _ = convert("traces.jsonl", source_format="traces")
    assert [r["metadata"]["span_id"] for r in recs] == ["s1", "s2", "s4"]
    assert recs[0]["id"] == "tr1-s1"
    assert recs[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Capital of Italy?"},
                                   {"role": "assistant", "content": "Rome."}]
    tool = recs[1]
    assert tool["tools"][0]["function"]["name"] == "get_weather"
    assert tool["messages"][2]["tool_calls"][0] == {"id": "t-1", "type": "function",
                                                    "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    assert tool["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "t-1"}
    assert summary["skipped"] == {"annotated rejected": 2, "not an LLM span": 3}


def test_all_spans_without_approval(convert):
    _, recs, _ = convert("traces.jsonl", approved_only=False)
    assert len(recs) == 5


def test_preference_from_an_approved_and_a_rejected_output_of_one_prompt(convert):
    summary, recs, _ = convert("traces.jsonl", to="preference")
    assert len(recs) == 1
    assert recs[0]["id"] == "tr1-s1-vs-tr1-s3"
    assert recs[0]["chosen"] == [{"role": "assistant", "content": "Rome."}]
    assert recs[0]["rejected"] == [{"role": "assistant", "content": "Milan."}]
    assert summary["skipped"]["identical chosen and rejected"] == 1  # the joke spans


def test_sessions_become_multi_turn_trajectories_in_time_order(convert, tmp_path):
    summary, recs, _ = convert("traces.jsonl", sessions=True)
    assert [m["content"] for m in recs[0]["messages"]] == ["Hi, who are you?", "I am a bot.", "Thanks!", "You're welcome."]
    assert recs[0]["id"] == "session-sess-1"
    summary, recs, _ = convert("traces.jsonl", sessions=True, min_turns=3)
    assert recs == [] and summary["skipped"] == {"fewer than min_turns turns": 1}


def test_triplets_from_retriever_spans_with_relevance_labels_in_a_second_file(convert):
    summary, recs, _ = convert("traces.jsonl", to="triplet", annotations=str(FIXTURES / "traces_annotations.jsonl"))
    assert [(r["anchor"], r["positive"][:20], r["negative"]) for r in recs] == [
        ("reset password", "To reset your passwo", "Our office is in Berlin."),
        ("reset password", "Passwords must have ", "Our office is in Berlin.")]
    summary, recs, rejects = convert("traces.jsonl", to="triplet")  # no labels: nothing to pair
    assert recs == [] and rejects[0]["reason"] == "no relevant and irrelevant document pair"


def test_phoenix_exports_grouped_in_one_json_object_are_read(convert, tmp_path):
    lines = (FIXTURES / "traces.jsonl").read_bytes().splitlines()
    spans = [orjson.loads(x) for x in lines if b'"context"' in x]
    grouped = tmp_path / "grouped.json"
    grouped.write_bytes(orjson.dumps({"first": spans[:3], "rest": spans[3:]}, option=orjson.OPT_INDENT_2))
    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    s = run_convert(config.build(Config, None, {"input": str(grouped), "output": str(tmp_path / "o.jsonl"),
                                            "approved_only": False}))
    assert s["from"] == "traces" and s["converted"] == 5


def test_flat_attribute_maps_and_undeclared_tools_are_declared_by_name(tmp_path):
    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    span = {"openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Weather in Paris?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "1234",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{\"location\":\"Paris\"}",
            "llm.tools.0.tool.json_schema": "{}"}
    inp = tmp_path / "span.json"
    inp.write_bytes(orjson.dumps(span, option=orjson.OPT_INDENT_2))
    s = run_convert(config.build(Config, None, {"input": str(inp), "output": str(tmp_path / "o.jsonl"), "approved_only": False}))
    assert s["from"] == "traces" and s["converted"] == 1
    rec = orjson.loads((tmp_path / "o.jsonl").read_bytes())
    assert rec["tools"] == [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {}}}}}]
    assert rec["metadata"]["inferred_tools"] == ["get_weather"]
    assert rec["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"location": "Paris"}


def test_one_span_with_an_approved_output_and_a_rejected_alternative(tmp_path):
    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    span = {"name": "chat", "context": {"trace_id": "t9", "span_id": "x1"}, "span_kind": "LLM",
            "attributes": {"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "2+2?",
                           "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "4"}}
    lines = [span, {"span_id": "x1", "label": "approved"}, {"span_id": "x1", "label": "rejected", "output": "5"}]
    inp = tmp_path / "one.jsonl"
    inp.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    s = run_convert(config.build(Config, None, {"input": str(inp), "output": str(tmp_path / "p.jsonl"), "to": "preference"}))
    rec = orjson.loads((tmp_path / "p.jsonl").read_bytes())
    assert s["converted"] == 1 and rec["id"] == "t9-x1-pref"
    assert (rec["chosen"][0]["content"], rec["rejected"][0]["content"]) == ("4", "5")
