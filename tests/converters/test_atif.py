"""ATIF agent trajectories -> sft with calls, observations, reasoning and environment notes."""


def test_steps_become_a_trajectory_with_calls_results_and_notes(convert):
    summary, recs, rejects = convert("atif.jsonl")
    assert summary["from"] == "atif" and summary["converted"] == 1
    rec = recs[0]
    assert rec["id"] == "sess-1"
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "tool", "tool", "user", "assistant"]
    call_msg = rec["messages"][2]
    assert call_msg["reasoning"] == "Use disk_usage." and [c["id"] for c in call_msg["tool_calls"]] == ["c-1", "c-2"]
    assert [(m["tool_call_id"], m["content"]) for m in rec["messages"][3:5]] == [("c-2", "up 3 days"), ("c-1", "")]
    assert rec["messages"][5] == {"role": "user", "content": "Note: /var is on a shared volume."}
    assert rec["metadata"] == {"source": "atif", "agent": "ops-bot", "model": "m-1", "schema_version": "ATIF-v1.5",
                               "notes_as_user_turns": 1, "inferred_tools": ["uptime"]}
    assert [t["function"]["name"] for t in rec["tools"]] == ["disk_usage", "uptime"]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "non-text content")]
