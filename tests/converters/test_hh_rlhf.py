"""HH-RLHF transcripts -> preference (shared turns as the prompt) or sft (the chosen transcript)."""


def test_shared_turns_become_the_prompt_and_the_last_replies_the_answers(convert):
    summary, recs, rejects = convert("hh_rlhf.jsonl", to="preference")
    assert summary["from"] == "hh-rlhf" and summary["converted"] == 1
    rec = recs[0]
    assert [m["content"] for m in rec["prompt"]] == ["How do I boil an egg?", "Which style?", "Soft."]
    assert rec["chosen"] == [{"role": "assistant", "content": "Boil it for 6 minutes, then cool it in cold water."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "Eggs are laid by hens."}]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "identical chosen and rejected"), (3, "empty assistant turn")]


def test_sft_keeps_the_chosen_transcript(convert):
    _, recs, _ = convert("hh_rlhf.jsonl", to="sft")
    assert [m["role"] for m in recs[0]["messages"]] == ["user", "assistant", "user", "assistant"]
