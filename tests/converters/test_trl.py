"""TRL's dataset formats -> our records: every row type, standard and conversational, tools carried,
the unpaired pairing rule, stepwise labels, and auto-detection telling them apart."""
import pytest

from trajtune.errors import UsageError

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}


def test_prompt_completion_rows_become_sft_with_tools_and_parsed_arguments(convert):
    summary, recs, rejects = convert("trl_prompt_completion.jsonl")
    assert summary["from"] == "trl" and summary["converted"] == 3
    tooly, text, multi = recs
    assert tooly["tools"] == [WEATHER]  # a JSON-string tools column
    assert tooly["messages"] == [
        {"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Sunny for two days."}]
    # standard (text) columns: the prompt is the user turn, the completion the assistant turn, spaces kept
    assert text["messages"] == [{"role": "user", "content": "The sky is"}, {"role": "assistant", "content": " blue."}]
    # TRL trains the completion only: an assistant turn inside the prompt is not trained on
    assert multi["messages"][1] == {"role": "assistant", "content": "Hello!", "train": False}
    assert multi["messages"][3] == {"role": "assistant", "content": "4"}
    assert multi["metadata"]["extra"] == {"source_dataset": "toy"}
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "language-modeling text (no turns)"), (5, "prompt only (no answer)"), (6, "keys of two TRL types"),
        (7, "empty assistant turn")]
    assert "keep one type a file" in rejects[2]["detail"]


def test_preference_rows_with_explicit_and_implicit_prompts(convert):
    summary, recs, rejects = convert("trl_preference.jsonl", to="preference")
    assert summary["from"] == "trl" and summary["converted"] == 5
    sky = {"prompt": [{"role": "user", "content": "The sky is"}], "chosen": [{"role": "assistant", "content": " blue."}],
           "rejected": [{"role": "assistant", "content": " green."}]}
    assert {k: recs[1][k] for k in sky} == sky  # standard, explicit
    assert {k: recs[3][k] for k in sky} == sky  # standard, implicit: TRL's character prefix, the space starts the answer
    assert recs[2]["prompt"] == [{"role": "user", "content": "Where is the sun?"}]  # conversational, implicit
    assert recs[2]["rejected"] == [{"role": "assistant", "content": "In the sea."}]
    assert recs[4]["tools"][0]["function"]["name"] == "get_weather"
    assert recs[4]["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert [(r["line"], r["reason"]) for r in rejects] == [(6, "identical chosen and rejected")]


def test_a_preference_file_converted_to_sft_says_which_kind_it_gives(convert):
    summary, recs, rejects = convert("trl_preference.jsonl")
    assert recs == [] and summary["rejected"] == {"preference row": 6}
    assert rejects[0]["detail"] == "convert it with --to preference"


def test_unpaired_rows_are_kept_as_labelled_records(convert):
    summary, recs, rejects = convert("trl_unpaired.jsonl", to="labelled")
    assert summary["converted"] == 7 and summary["rejected"] == {"label not true/false": 1}
    assert [r["label"] for r in recs] == [True, False, True, True, False, True, False]
    assert recs[0]["prompt"] == [{"role": "user", "content": "What color is the sky?"}]
    assert recs[0]["completion"] == [{"role": "assistant", "content": "It is blue."}]
    # LLaMA-Factory's KTO rows (messages + label): the turns after the last user turn are the completion
    kto = recs[5]
    assert kto["prompt"] == [{"role": "user", "content": "Weather in Oslo?"}]
    assert [m["role"] for m in kto["completion"]] == ["assistant", "tool", "assistant"]
    assert kto["completion"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"} and kto["tools"]


def test_unpaired_rows_pair_by_prompt_in_file_order_and_the_rest_is_rejected(convert):
    summary, recs, rejects = convert("trl_unpaired.jsonl", to="preference")
    # "What color is the sky?": lines 1 (true), 2 (false), 4 (true) -> 1+2 paired, 4 left alone;
    # "The sky is": 3 (true) + 7 (false); line 5 and the KTO row 6 have no partner
    assert summary["converted"] == 2
    assert summary["rejected"] == {"label not true/false": 1, "no partner with the other label": 3}
    assert sorted(r["line"] for r in rejects if r["reason"].startswith("no partner")) == [4, 5, 6]
    first, second = recs
    assert first["chosen"] == [{"role": "assistant", "content": "It is blue."}]
    assert first["rejected"] == [{"role": "assistant", "content": "It is green."}]
    assert first["metadata"]["pair"] == {"chosen": {"id": first["id"].split("+")[0], "line": 1},
                                         "rejected": {"id": first["id"].split("+")[1], "line": 2}}
    assert (second["metadata"]["pair"]["chosen"]["line"], second["metadata"]["pair"]["rejected"]["line"]) == (3, 7)
    # every input row is accounted for: 2 per pair, 1 per reject
    assert 2 * summary["converted"] + sum(summary["rejected"].values()) == 8


def test_unpaired_rows_to_sft_keep_the_desirable_answers(convert):
    summary, recs, _ = convert("trl_unpaired.jsonl")
    assert summary["converted"] == 4 and summary["skipped"] == {"label false (undesirable answer)": 3}
    assert recs[0]["messages"][-1] == {"role": "assistant", "content": "It is blue."}


def test_stepwise_rows_become_labelled_records_with_one_label_a_step(convert):
    summary, recs, rejects = convert("trl_stepwise.jsonl", to="labelled")
    assert summary["from"] == "trl" and summary["converted"] == 2
    assert recs[0]["prompt"] == [{"role": "user", "content": "Which number is larger, 9.8 or 9.11?"}]
    assert [m["role"] for m in recs[0]["completion"]] == ["assistant", "assistant"]
    assert recs[0]["labels"] == [True, False] and "label" not in recs[0]
    assert [(r["line"], r["reason"], r["detail"]) for r in rejects] == [
        (3, "completions and labels differ in length", "2 completions, 1 labels")]


def test_auto_detection_tells_trl_from_openai_and_asks_when_ambiguous(convert):
    assert convert("openai.jsonl")[0]["from"] == "openai"  # messages rows: the same format, the openai reader
    for name, kind in (("trl_prompt_completion.jsonl", "sft"), ("trl_preference.jsonl", "preference"),
                       ("trl_unpaired.jsonl", "labelled"), ("trl_stepwise.jsonl", "labelled")):
        assert convert(name, to=kind)[0]["from"] == "trl", name
    with pytest.raises(UsageError) as e:
        convert("ambiguous_task_prompt_completion.jsonl")
    assert "input format is ambiguous (cold-start or trl)" in e.value.render()
    assert "pass --from cold-start or --from trl" in e.value.render()
    summary, recs, _ = convert("ambiguous_task_prompt_completion.jsonl", source_format="trl")
    assert summary["converted"] == 2 and recs[0]["metadata"]["extra"] == {"task_id": "a1"}
