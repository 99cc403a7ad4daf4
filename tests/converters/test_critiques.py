"""Self-critiques and hard failures -> sft and preference."""


def test_sft_trains_on_the_corrected_output_and_the_reference_answer(convert):
    summary, recs, rejects = convert("critiques.jsonl", source_format="critiques")
    assert summary["converted"] == 3
    assert recs[0]["messages"][1]["content"].startswith("Soft rain")
    assert recs[0]["metadata"]["critique"] == "Not a haiku: wrong syllable count."
    assert recs[2]["messages"] == [{"role": "user", "content": "Sort [3,1,2] ascending."},
                                   {"role": "assistant", "content": "[1, 2, 3]"}]
    assert recs[2]["metadata"] == {"category": "reasoning", "kind": "hard_failure", "source": "critiques"}
    assert [(r["line"], r["reason"]) for r in rejects] == [(4, "instruction empty")]


def test_preference_prefers_the_corrected_output_over_the_bad_one(convert):
    summary, recs, _ = convert("critiques.jsonl", to="preference")
    assert summary["converted"] == 1
    assert recs[0]["chosen"][0]["content"].startswith("Soft rain") and recs[0]["rejected"][0]["content"] == "Rain rain go away."
    assert summary["skipped"] == {"hard-failure row has no rejected answer": 1, "identical chosen and rejected": 1}
