"""openai chat fine-tuning JSONL -> sft: string arguments, legacy functions, weights, parts."""


def test_string_and_double_encoded_arguments_become_objects(convert):
    summary, recs, _ = convert("openai.jsonl", source_format="openai")
    assert summary["converted"] == 5
    assert recs[0]["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_id", "type": "function", "function": {"name": "takeoff", "arguments": {"altitude": 100}}}]}
    assert recs[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"altitude": 50}
    assert "parallel_tool_calls" not in recs[0] and recs[0]["metadata"]["extra"] == {"parallel_tool_calls": False}


def test_weight_zero_becomes_train_false_and_text_parts_are_joined(convert):
    _, recs, _ = convert("openai.jsonl")
    msgs = recs[2]["messages"]
    assert msgs[0] == {"role": "user", "content": "Hello there"}
    assert msgs[1] == {"role": "assistant", "content": "Wrong first try", "train": False}
    assert msgs[3] == {"role": "assistant", "content": "Hi!", "train": True}


def test_legacy_functions_become_tools_and_calls(convert):
    _, recs, _ = convert("openai.jsonl")
    legacy = recs[3]
    assert legacy["tools"][0]["function"]["name"] == "takeoff"
    call = legacy["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "takeoff", "arguments": {"altitude": 10}}
    assert legacy["messages"][2] == {"role": "tool", "content": "airborne", "tool_call_id": call["id"], "name": "takeoff"}


def test_ids_and_metadata_of_the_input_are_kept(convert):
    _, recs, _ = convert("openai.jsonl")
    assert recs[4]["id"] == "keep-me" and recs[4]["metadata"] == {"source": "mine", "category": "chat"}


def test_bad_lines_are_rejected_with_line_numbers(convert):
    summary, _, rejects = convert("openai.jsonl")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (5, "not valid JSON"), (6, "arguments not valid JSON"), (7, "non-text content")]
    assert rejects[0]["input"].startswith('{"messages"')


def test_llamafactory_v1_parts_loss_weights_and_python_type_names(convert):
    summary, recs, rejects = convert("llamafactory_v1.jsonl", source_format="openai")
    assert summary["converted"] == 1
    msgs = recs[0]["messages"]
    assert msgs[1] == {"role": "user", "content": "Movie details for Inception"}  # loss_weight only counts on assistant turns
    assert msgs[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_movie", "arguments": {"title": "Inception"}}}],
        "train": True, "reasoning": "I should call the tool."}
    assert msgs[4] == {"role": "assistant", "content": "It came out in 2010.", "train": False}
    assert recs[0]["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}}, "required": ["title"]}
    assert summary["skipped"] == {"label false (undesirable answer)": 1}
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "multimodal row"), (4, "unfilled {{placeholder}}")]
    assert rejects[1]["record"]["messages"][1]["content"] == "I am {{name}}."


def test_a_file_that_is_not_json_at_all_is_rejected_line_by_line(convert):
    summary, recs, rejects = convert("python_repr.jsonl", source_format="openai")
    assert recs == [] and summary["rejected"] == {"not valid JSON": 2}
    assert rejects[1]["line"] == 2 and rejects[1]["input"].startswith("{'messages'")


def test_openai_and_llamafactory_v1_preference_rows(convert):
    summary, recs, rejects = convert("openai_preference.jsonl", to="preference")
    assert summary["from"] == "openai" and summary["converted"] == 2
    assert recs[0]["prompt"] == [{"role": "user", "content": "Hello, can you tell me how cold San Francisco is today?"}]
    assert recs[0]["chosen"][0]["content"].startswith("Today in San Francisco") and recs[0]["tools"] == []
    assert recs[1]["prompt"] == [{"role": "system", "content": "Be accurate."}, {"role": "user", "content": "2+2?"}]
    assert (recs[1]["chosen"], recs[1]["rejected"]) == ([{"role": "assistant", "content": "4", "train": True}],
                                                       [{"role": "assistant", "content": "5", "train": True}])
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "no chosen/rejected answers")]
