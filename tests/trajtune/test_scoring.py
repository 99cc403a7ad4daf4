"""The scorer: one definition of a correct reply, used by evaluate and as the RL reward."""
import pytest

from trajtune.chat import format_tool_call
from trajtune.scoring import REASONS, score

TOOLS = [
    {"type": "function", "function": {"name": "database_query", "parameters": {
        "type": "object", "properties": {"table": {"type": "string"}, "limit": {"type": "integer"},
                                         "code": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "send_email", "parameters": {
        "type": "object", "properties": {"to": {"type": "string"}}}}},
]


def task(calls=None, order="strict", answer=None, match="exact"):
    exp = {"answer": answer, "match": match} if answer is not None else {"calls": calls or [], "order": order}
    return {"id": "t1", "prompt": [{"role": "user", "content": "hi"}], "tools": TOOLS, "expected": exp}


Q = {"name": "database_query", "arguments": {"table": ["orders"], "limit": [5, None]}}
E = {"name": "send_email", "arguments": {"to": ["a@b.c"]}}


def call(name, **args):
    return format_tool_call(name, args)


def test_exact_call_passes_with_full_reward():
    s = score(task([Q]), "Sure.\n" + call("database_query", table="orders", limit=5))
    assert s.passed and s.reason is None and s.reward == 1.0
    assert s.calls == [{"name": "database_query", "arguments": {"table": "orders", "limit": 5}}]
    assert s.tool_name_correct and s.argument_accuracy == 1.0 and s.valid_json and not s.hallucinated


def test_optional_argument_may_be_omitted_or_null():
    assert score(task([Q]), call("database_query", table="orders")).passed
    assert score(task([Q]), call("database_query", table="orders", limit=None)).passed


def test_string_five_is_not_integer_five():
    s = score(task([Q]), call("database_query", table="orders", limit="5"))
    assert not s.passed and s.reason == "wrong_argument"
    assert "'limit'" in s.detail
    assert 0 < s.reward < 1 and s.argument_accuracy == 0.5


def test_schema_string_accepts_text_of_a_number_but_not_the_number():
    t = task([{"name": "database_query", "arguments": {"table": ["orders"], "code": [42]}}])
    assert score(t, call("database_query", table="orders", code="42")).passed
    assert score(t, call("database_query", table="orders", code=42)).reason == "wrong_argument"


def test_bool_is_not_one_and_float_equals_int():
    t = task([{"name": "send_email", "arguments": {"to": [1]}}])
    assert score(t, call("send_email", to=True)).reason == "wrong_argument"
    t2 = task([{"name": "database_query", "arguments": {"table": ["x"], "limit": [5]}}])
    assert score(t2, call("database_query", table="x", limit=5.0)).passed


@pytest.mark.parametrize("text,reason", [
    ("I cannot help.", "no_call"),
    (call("send_email", to="a@b.c"), "wrong_tool"),
    (call("drop_tables", table="orders"), "hallucinated_tool"),
    (call("database_query", limit=5), "missing_argument"),
    (call("database_query", table="orders", limit=5, verbose=True), "extra_argument"),
    (call("database_query", table="users"), "wrong_argument"),
    ("<tool_call>\n{\"name\": \"database_query\", \"arguments\": {table: 1}}\n</tool_call>", "unparsable_json"),
    ("<tool_call>\n{\"name\": \"database_query\", \"argu", "truncated"),
    (call("database_query", table="orders") + call("database_query", table="orders"), "extra_calls"),
])
def test_failure_reasons(text, reason):
    s = score(task([Q]), text)
    assert not s.passed and s.reason == reason
    assert reason in REASONS and s.detail
    assert 0.0 <= s.reward < 1.0


def test_hallucinated_tool_gets_no_credit():
    s = score(task([Q]), call("drop_tables", table="orders"))
    assert s.hallucinated and s.reward == 0.0 and s.tool_name_correct is False


def test_token_limit_reported_as_truncated_when_call_missing():
    s = score(task([Q]), "Let me think about which table to use and", truncated=True)
    assert s.reason == "truncated"


def test_order_strict_vs_any():
    text = call("send_email", to="a@b.c") + "\n" + call("database_query", table="orders")
    assert score(task([Q, E], order="any"), text).passed
    s = score(task([Q, E], order="strict"), text)
    assert not s.passed and s.reason == "wrong_tool"


def test_fewer_calls_than_expected_names_the_missing_call():
    s = score(task([Q, E]), call("database_query", table="orders"))
    assert s.reason == "missing_call" and "send_email" in s.detail and not s.tool_name_correct
    # no call at all is another failure: the model chose not to call
    assert score(task([Q, E]), "I cannot help.").reason == "no_call"


def test_no_call_task_passes_only_without_a_call():
    assert score(task([]), "No tool is needed: 2 + 2 = 4.").passed
    s = score(task([]), call("send_email", to="x"))
    assert not s.passed and s.reason == "unexpected_call" and s.reward == 0.0
    assert score(task([]), "<tool_call>\n{oops}\n</tool_call>").reason == "unexpected_call"
    assert score(task([]), "No tool is needed, because", truncated=True).reason == "truncated"


@pytest.mark.parametrize("rule,answer,text,ok", [
    ("exact", "Paris", "  Paris\n", True),
    ("exact", "Paris", "It is Paris", False),
    ("contains", "paris", "The capital is   PARIS.", True),
    ("regex", r"\b4\b", "2 + 2 = 4", True),
    ("regex", r"^5$", "2 + 2 = 4", False),
])
def test_answer_tasks(rule, answer, text, ok):
    s = score(task(answer=answer, match=rule), text)
    assert s.passed is ok and (s.reason is None if ok else s.reason == "wrong_answer")


def test_answer_task_with_a_call_fails():
    assert score(task(answer="4"), call("send_email", to="x")).reason == "unexpected_call"


def test_nested_values_compare_with_types():
    t = task([{"name": "database_query", "arguments": {"table": ["x"], "filter": [{"a": [1, "2"]}]}}])
    assert score(t, call("database_query", table="x", filter={"a": [1, "2"]})).passed
    assert score(t, call("database_query", table="x", filter={"a": ["1", "2"]})).reason == "wrong_argument"
