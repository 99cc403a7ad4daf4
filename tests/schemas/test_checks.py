"""Semantic checks (trajtune.schemas.checks) on single records."""
import pytest

from trajtune.schemas import checks
from trajtune.schemas.checks import check_record

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}


def call(cid, args, name="get_weather"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def names(issues):
    return [i[0] for i in issues]


def test_a_clean_multi_step_trajectory_has_no_issue():
    rec = {"tools": [WEATHER], "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "Oslo and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [call("a", {"city": "Oslo"}), call("b", {"city": "Rome", "unit": "c"})]},
        {"role": "tool", "tool_call_id": "b", "content": "20"}, {"role": "tool", "tool_call_id": "a", "content": "3"},
        {"role": "assistant", "content": "Rome is warmer."}]}
    assert check_record(rec, "sft") == []


def test_argument_errors_name_the_argument_and_are_stable_across_uses():
    rec = {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call("a", {"unit": "k"})]},
        {"role": "tool", "tool_call_id": "a", "content": "?"}, {"role": "assistant", "content": "done"}]}
    first = check_record(rec, "sft")
    for _ in range(10):  # the compiled schema is cached: the same verdict every time
        assert check_record(rec, "sft") == first
    assert checks.arg_validator(WEATHER["function"]["parameters"]).schema_error is None
    assert [m for _, m, _ in first] == ["'get_weather' arguments: \"city\" is a required property",
                                         "'get_weather' arguments: \"k\" is not one of \"c\" or \"f\" (at unit)"]
    assert {w for _, _, w in first} == {"$.messages[1].tool_calls[0].function.arguments"}


def test_remote_ref_in_parameters_is_reported_without_network():
    tool = {"type": "function", "function": {"name": "t", "parameters": {
        "type": "object", "properties": {"x": {"$ref": "https://example.invalid/x.json"}}}}}
    rec = {"tools": [tool], "messages": [{"role": "user", "content": "q"},
                                         {"role": "assistant", "content": None, "tool_calls": [call("a", {"x": 1}, "t")]}]}
    for _ in range(6):
        issues = check_record(rec, "sft")
    assert names(issues) == ["tool_schema"]
    assert "'https://example.invalid/x.json' points outside the record; schemas are resolved offline" in issues[0][1]
    assert issues[0][2] == "$.tools[0].function.parameters"


def test_a_call_pending_at_the_end_of_the_prompt_may_be_answered_in_each_continuation():
    rec = {"tools": [WEATHER], "prompt": [{"role": "user", "content": "Oslo?"},
                                          {"role": "assistant", "content": None, "tool_calls": [call("a", {"city": "Oslo"})]}],
           "chosen": [{"role": "tool", "tool_call_id": "a", "content": "3"}, {"role": "assistant", "content": "3 °C"}],
           "rejected": [{"role": "tool", "tool_call_id": "a", "content": "3"}, {"role": "assistant", "content": "hot"}]}
    assert check_record(rec, "preference") == []
    rec["rejected"] = [{"role": "assistant", "content": "hot"}]
    assert names(check_record(rec, "preference")) == ["call_without_result"]


@pytest.mark.parametrize("expected,check", [
    ({"calls": [{"name": "get_weather", "arguments": {"city": ["Oslo"], "unit": ["c", None]}}], "order": "any"}, None),
    ({"calls": []}, None),
    ({"answer": "a+", "match": "regex"}, None),
    ({"answer": "a(", "match": "regex"}, "bad_regex"),
    ({"calls": [{"name": "get_weather", "arguments": {"city": [7]}}]}, "arguments_schema"),
])
def test_task_expectations(expected, check):
    rec = {"tools": [WEATHER], "prompt": [{"role": "user", "content": "q"}], "expected": expected}
    assert names(check_record(rec, "task")) == ([check] if check else [])


def test_every_reported_check_has_a_severity():
    assert set(checks.SEVERITY.values()) == {"error", "warning"}
    assert checks.SEVERITY["duplicate_content"] == "warning" and checks.SEVERITY["duplicate_id"] == "error"
