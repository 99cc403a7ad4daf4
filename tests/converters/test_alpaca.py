"""alpaca -> sft: instruction/input/output, system and history, placeholders, mixed types."""


def test_rows_become_user_and_assistant_turns_with_system_and_history(convert):
    summary, recs, rejects = convert("alpaca.json", source_format="alpaca")
    assert summary["converted"] == 3
    first, second = recs[0], recs[1]
    assert first["metadata"] == {"source": "alpaca"} and first["id"].startswith("alpaca-")
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert second["messages"][3]["content"] == "Translate to French.\n\nGood morning"
    assert recs[2]["metadata"] == {"category": "trivia", "source": "alpaca", "extra": {"extra_field": {"ignored": True}}}


def test_every_bad_row_is_rejected_with_its_line_and_reason(convert):
    summary, _, rejects = convert("alpaca.json")
    assert summary["rejected"] == {"output empty": 1, "output not a string": 1, "unfilled {{placeholder}}": 1}
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "unfilled {{placeholder}}"), (4, "output empty"), (5, "output not a string")]
    assert rejects[0]["input"]["output"].startswith("I am {{name}}")


def test_placeholders_are_kept_when_allowed(convert):
    summary, recs, _ = convert("alpaca.json", allow_placeholders=True)
    assert summary["converted"] == 4
