"""The scorer's BFCL mode (BFCL's AST checker, ported), rule by rule, on small synthetic tasks.

Parity with BFCL's own checker on BFCL's data is tests/bfcl/test_parity.py."""
import pytest

from trajtune.chat import format_tool_call
from trajtune.scoring import bfcl_standardize, score, scoring_mode

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object",
    "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "number"},
        "metric": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
        "temps": {"type": "array", "items": {"type": "number"}},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}, "name": {"type": "string"}}},
        "stops": {"type": "array", "items": {"type": "object"}},
        "note": {},  # no type: BFCL's "any", checked as a string
    },
    "required": ["city"]}}}
NEWS = {"type": "function", "function": {"name": "get_news", "parameters": {
    "type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}}}


def task(calls, order="strict", tools=(WEATHER, NEWS), bfcl=True):
    meta = {"scoring": "bfcl"} if bfcl else {}
    return {"id": "t", "metadata": meta, "prompt": [{"role": "user", "content": "hi"}], "tools": list(tools),
            "expected": {"calls": calls, "order": order}}


def W(**args):
    return {"name": "get_weather", "arguments": args}


def call(name="get_weather", **args):
    return format_tool_call(name, args)


def ok(t, text, **kw):
    return score(t, text, **kw).passed


# ---------------------------------------------------------------------------------------------
# which rules


def test_mode_comes_from_metadata_or_the_match_option():
    t, plain = task([W(city=["Paris"])]), task([W(city=["Paris"])], bfcl=False)
    assert scoring_mode(t) == "bfcl" and scoring_mode(plain) == "trajtune"
    assert scoring_mode(t, "trajtune") == "trajtune" and scoring_mode(plain, "bfcl") == "bfcl"
    assert score(t, call(city="paris")).match == "bfcl" and score(t, call(city="paris")).passed
    assert not ok(t, call(city="paris"), match="trajtune")  # exact strings there
    assert ok(plain, call(city="PARIS"), match="bfcl") and not ok(plain, call(city="PARIS"))
    with pytest.raises(ValueError):
        scoring_mode(t, "strict")


def test_evaluate_has_the_match_option():
    from typing import get_args, get_type_hints

    from trajtune.scripts.evaluate import Config

    assert set(get_args(get_type_hints(Config)["match"])) == {"auto", "bfcl", "trajtune"}
    assert Config.__dataclass_fields__["match"].default == "auto"


def test_answer_tasks_keep_their_rules():
    t = {"id": "a", "metadata": {"scoring": "bfcl"}, "prompt": [], "expected": {"answer": "42", "match": "exact"}}
    assert ok(t, "42") and not ok(t, "forty-two")


# ---------------------------------------------------------------------------------------------
# names and parameters


def test_function_name_must_match_exactly():
    t = task([W(city=["Paris"])])
    s = score(t, call("get_news", topic="Paris"))
    assert not s.passed and s.reason == "wrong_tool"
    s = score(t, call("Get_Weather", city="Paris"))
    assert not s.passed and s.reason == "hallucinated_tool" and s.hallucinated and s.reward == 0.0


def test_required_parameter_must_be_present_even_if_the_answer_marks_it_optional():
    t = task([W(city=["Paris", None])])
    s = score(t, call(days=3))
    assert not s.passed and s.reason == "missing_argument" and "'city'" in s.detail


def test_parameter_outside_the_schema_or_the_answer_fails():
    t = task([W(city=["Paris"])])
    s = score(t, call(city="Paris", country="FR"))
    assert s.reason == "extra_argument" and "'country'" in s.detail
    s = score(t, call(city="Paris", days=3))  # in the schema, not in the answer
    assert s.reason == "extra_argument" and "'days'" in s.detail
    # in the answer but not in the tool's schema: still unexpected
    t2 = task([W(city=["Paris"], country=["FR", None])])
    assert ok(t2, call(city="Paris")) and score(t2, call(city="Paris", country="FR")).reason == "extra_argument"


def test_optional_parameter_may_be_omitted_only_when_null_is_acceptable():
    assert ok(task([W(city=["Paris"], days=[3, None])]), call(city="Paris"))
    s = score(task([W(city=["Paris"], days=[3])]), call(city="Paris"))
    assert not s.passed and s.reason == "missing_argument" and "'days'" in s.detail


def test_null_plays_bfcls_empty_string():
    t = task([W(city=["Paris"], note=["hello", None], tags=[["a"], None], days=[3, None])])
    assert ok(t, call(city="Paris", note=""))  # "" is an acceptable string, as in BFCL
    assert ok(t, call(city="Paris", tags=[]))  # and [] an acceptable list
    assert not ok(t, call(city="Paris", days=None))  # null itself is no integer
    assert ok(t, call(city="Paris", days=None), match="trajtune")


# ---------------------------------------------------------------------------------------------
# values


def test_strings_compare_after_bfcls_standardisation():
    assert bfcl_standardize("San Francisco, CA.") == "sanfranciscoca"
    assert bfcl_standardize("a-b_c/d*e^f") == "abcdef" and bfcl_standardize("it's") == 'it"s'
    t = task([W(city=["San Francisco, CA"])])
    for sent in ("san francisco ca", "SAN_FRANCISCO-CA", "San Francisco,CA.", "sanfrancisco*ca^"):
        assert ok(t, call(city=sent)), sent
    s = score(t, call(city="San Jose, CA"))
    assert not s.passed and s.reason == "wrong_argument"
    assert ok(task([W(city=["Joe's"])]), call(city='Joe"s'))
    assert not ok(task([W(city=["Paris"])]), call(city="Paris!"))  # only spaces and ,./-_*^ go


def test_int_is_accepted_for_a_float_but_not_a_float_for_an_int():
    assert ok(task([W(city=["Paris"], scale=[2.0])]), call(city="Paris", scale=2))
    assert not ok(task([W(city=["Paris"], scale=[2.5])]), call(city="Paris", scale=2))
    s = score(task([W(city=["Paris"], days=[3])]), call(city="Paris", days=3.0))
    assert not s.passed and s.reason == "wrong_argument" and "type integer" in s.detail


def test_types_are_strict_otherwise():
    t = task([W(city=["Paris"], days=[1], metric=[True])])
    assert ok(t, call(city="Paris", days=1, metric=True))
    assert not ok(t, call(city="Paris", days=True, metric=True))  # bool is not int
    assert not ok(t, call(city="Paris", days=1, metric=1))  # nor int bool
    assert not ok(t, call(city="Paris", days="1", metric=True))
    assert not ok(task([W(city=["5"])]), call(city=5))


def test_answer_of_another_type_than_the_schema_is_compared_as_is():
    # BFCL's "variable" case: the acceptable values' own type is accepted, compared by ==
    t = task([W(city=[5])])
    assert ok(t, call(city=5)) and not ok(t, call(city="5"))


def test_untyped_parameter_is_checked_as_a_string():
    t = task([W(city=["Paris"], note=["Hello World"])])
    assert ok(t, call(city="Paris", note="hello world"))
    assert not ok(t, call(city="Paris", note=["Hello World"]))


def test_bfcl_type_names_are_read_too():
    raw = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "dict", "properties": {
        "scale": {"type": "float"}, "where": {"type": "dict"}, "pair": {"type": "tuple", "items": {"type": "integer"}}},
        "required": []}}}
    t = task([W(scale=[1.0], where=[{"name": "x"}], pair=[[1, 2]])], tools=[raw])
    assert ok(t, call(scale=1, where={"name": "X"}, pair=[1, 2]))
    assert not ok(t, call(scale=1, where={"name": "X"}, pair=[1.0, 2]))


def test_lists_are_order_sensitive_with_standardised_string_items():
    t = task([W(city=["Paris"], tags=[["Rain Gear", "sun"]])])
    assert ok(t, call(city="Paris", tags=["rain gear", "SUN"]))
    assert ok(t, call(city="Paris", tags=["raingear", "sun"]))
    assert not ok(t, call(city="Paris", tags=["sun", "Rain Gear"]))
    assert not ok(t, call(city="Paris", tags=["Rain Gear"]))


def test_array_items_type_one_level_deep_without_int_promotion():
    t = task([W(city=["Paris"], temps=[[1.0, 2.5]])])
    assert ok(t, call(city="Paris", temps=[1.0, 2.5]))
    assert not ok(t, call(city="Paris", temps=[1, 2.5]))  # no int -> float inside arrays


def test_dicts_compare_key_by_key():
    t = task([W(city=["Paris"], where=[{"lat": 48.8, "name": "Île de la Cité"}, {"lat": 48.8}])])
    assert ok(t, call(city="Paris", where={"lat": 48.8, "name": "île-de-la-cité"}))  # strings standardised
    assert ok(t, call(city="Paris", where={"lat": 48.8}))  # the second acceptable object
    assert not ok(t, call(city="Paris", where={"lat": 48.9}))
    assert not ok(t, call(city="Paris", where={"lat": 48.8, "zoom": 2}))  # unexpected key
    assert not ok(task([W(city=["Paris"], where=[{"lat": 48.8, "name": "x"}])]), call(city="Paris", where={"lat": 48.8}))
    # a key whose value is null may be left out
    assert ok(task([W(city=["Paris"], where=[{"lat": 48.8, "name": None}])]), call(city="Paris", where={"lat": 48.8}))


def test_nested_dicts_compare_exactly_as_bfcl_does():
    t = task([W(city=["Paris"], where=[{"lat": 1, "name": {"en": "Paris"}}])])
    assert ok(t, call(city="Paris", where={"lat": 1.0, "name": {"en": "Paris"}}))  # Python ==: 1 == 1.0
    assert not ok(t, call(city="Paris", where={"lat": 1, "name": {"en": "paris"}}))  # no standardising inside


def test_lists_of_dicts_compare_object_by_object():
    t = task([W(city=["Paris"], stops=[[{"at": "Louvre", "min": 30}, {"at": "Orsay"}]])])
    assert ok(t, call(city="Paris", stops=[{"at": "louvre", "min": 30}, {"at": "ORSAY"}]))
    assert not ok(t, call(city="Paris", stops=[{"at": "Orsay"}, {"at": "Louvre", "min": 30}]))
    assert not ok(t, call(city="Paris", stops=[{"at": "Louvre", "min": 30}]))


# ---------------------------------------------------------------------------------------------
# calls


def test_one_expected_call_means_exactly_one_call():
    t = task([W(city=["Paris"])])
    assert ok(t, "Let me look.\n" + call(city="Paris"))
    s = score(t, call(city="Paris") + "\n" + call("get_news", topic="Paris"))
    assert not s.passed and s.reason == "extra_calls"
    s = score(t, "It is sunny.")
    assert not s.passed and s.reason == "no_call" and s.reward == pytest.approx(0.1)


def test_parallel_calls_same_count_any_order():
    t = task([W(city=["Paris"]), W(city=["Rome"])], order="any")
    assert ok(t, call(city="Rome") + "\n" + call(city="paris"))
    assert score(t, call(city="Rome")).reason == "missing_call"  # one call where two were asked
    assert score(t, "It is sunny in both.").reason == "no_call"
    assert score(t, call(city="Rome") + "\n" + call(city="Paris") + "\n" + call(city="Oslo")).reason == "extra_calls"
    strict = task([W(city=["Paris"]), W(city=["Rome"])], order="strict")
    assert ok(strict, call(city="Paris") + "\n" + call(city="Rome"))
    assert not ok(strict, call(city="Rome") + "\n" + call(city="Paris"))


def test_parallel_pairing_is_bfcls_greedy_first_fit():
    # expected 1 accepts Paris or Rome, expected 2 only Paris: the reply Paris, Rome has a perfect
    # pairing, but BFCL gives the first reply call that fits (Paris) to expected 1 and fails expected 2
    t = task([W(city=["Paris", "Rome"]), W(city=["Paris"])], order="any")
    s = score(t, call(city="Paris") + "\n" + call(city="Rome"))
    assert not s.passed and s.reason == "wrong_argument" and "expected call 2" in s.detail
    assert ok(t, call(city="Rome") + "\n" + call(city="Paris"))
    assert ok(t, call(city="Paris") + "\n" + call(city="Rome"), match="trajtune")  # best pairing there


def test_decoding_skips_broken_blocks_and_open_blocks():
    t = task([W(city=["Paris"])])
    assert ok(t, call(city="Paris") + "\n<tool_call>\nnot json\n</tool_call>")
    assert ok(t, call(city="Paris") + '\n<tool_call>\n{"name": "get_news", "argu', truncated=True)
    s = score(t, format_tool_call("get_weather", ["Paris"]))  # arguments not an object: undecodable
    assert not s.passed and s.reason == "unparsable_json"


# ---------------------------------------------------------------------------------------------
# no call expected (irrelevance)


def test_irrelevance_passes_when_no_valid_call_is_decoded():
    t = task([])
    assert ok(t, "None of these tools can help.") and ok(t, "")
    assert ok(t, "<tool_call>\nnot json\n</tool_call>")
    assert ok(t, format_tool_call("get_weather", "Paris"))  # undecodable reply
    assert ok(t, "Checking.\n<tool_call>\n" + '{"name": "get_weather", "arguments": {}}')  # never closed
    assert ok(t, "I can't.", truncated=True) and not ok(t, "I can't.", truncated=True, match="trajtune")
    s = score(t, call(city="Paris"))
    assert not s.passed and s.reason == "unexpected_call" and s.reward == 0.0


# ---------------------------------------------------------------------------------------------
# partial credit


def test_partial_credit_in_bfcl_mode():
    t = task([W(city=["Paris"], days=[3], scale=[1.5, None])])
    s = score(t, call(city="PARIS", days=3))
    assert s.passed and s.reward == 1.0 and s.argument_accuracy == 1.0 and s.tool_name_correct
    s = score(t, call(city="Lyon", days=3))
    assert not s.passed and s.argument_accuracy == pytest.approx(2 / 3)
    assert s.reward == pytest.approx(0.1 + 0.3 + 0.5 * 2 / 3)
    s = score(t, call(city="Paris", days=3.0, extra=1))  # one wrong, one extra of 4
    assert s.argument_accuracy == pytest.approx(2 / 4) and 0 < s.reward < 0.9
    s = score(t, call("get_news", topic="Paris"))
    assert s.tool_name_correct is False and s.reward == pytest.approx(0.1)
    two = task([W(city=["Paris"]), W(city=["Rome"])], order="any")
    s = score(two, call(city="Rome"))
    assert s.reward == pytest.approx(0.1 + 0.3 * 0.5 + 0.5 * 0.5)
