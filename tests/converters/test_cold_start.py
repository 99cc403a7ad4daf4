"""The design's cold-start export ({task_id, prompt, completion, metadata}) -> sft records."""


def test_rows_become_sft_with_metadata_kept_and_failed_runs_rejected(convert):
    summary, recs, rejects = convert("cold_start.jsonl")
    assert summary["from"] == "cold-start" and summary["converted"] == 2
    first = recs[0]
    assert first["id"] == "t-0001"
    assert first["messages"] == [{"role": "user", "content": "List the five newest orders."},
                                 {"role": "assistant", "content": "I queried the orders table sorted by date and "
                                                                  "returned the five newest."}]
    assert first["metadata"] == {"tool_sequence": ["database_query"], "difficulty": "easy", "agent": "sql-agent",
                                 "success": True, "source": "cold-start"}
    assert recs[1]["id"] == "7" and recs[1]["metadata"]["run"] == 3  # keys beyond the four are kept too
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "success false (a failed run)"),
                                                           (3, "task_id missing or empty")]
    assert rejects[0]["detail"] == "pass --keep-failed to keep failed runs"


def test_keep_failed_keeps_failed_runs_with_their_success_flag(convert):
    summary, recs, _ = convert("cold_start.jsonl", keep_failed=True)
    assert summary["converted"] == 3
    assert recs[1]["id"] == "t-0002" and recs[1]["metadata"]["success"] is False
