"""The MNRL batch sampler that keeps same-sense tools (twins) out of one batch."""
from __future__ import annotations

import collections
import json

import torch

from trajtune.embeddings import SenseBatches, sense_keys


def _catalog(tmp_path, n_senses=20, styles=3):
    """n_senses functions, each in `styles` naming styles with its own description (twins)."""
    tools = []
    for s in range(n_senses):
        for k, name in enumerate([f"get_thing_{s}", f"getThing{s}", f"api.get_thing_{s}"][:styles]):
            tools.append({"type": "function", "function": {
                "name": name, "description": f"Get thing number {s}{'.' if k else ', given id.'}",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}},
                "x-trajtune": {"sense": f"things.get_{s}:base", "family": f"things.get_{s}"}})
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    return path


def _rows(keys):
    docs = sorted(keys)
    return [{"anchor": f"please get thing {i} (ask {j})", "positive": d, "negative": docs[(i + 7) % len(docs)]}
            for i, d in enumerate(docs) for j in range(2)]


def _twin_meetings(batches, rows, keys):
    met = 0
    for b in batches:
        by = collections.defaultdict(set)
        for i in b:
            for col in ("positive", "negative"):
                by[keys[rows[i][col]]].add(rows[i][col])
        met += sum(len(v) > 1 for v in by.values())
    return met


def test_same_sense_documents_never_share_a_batch_and_no_row_is_lost(tmp_path):
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    keys = sense_keys([str(_catalog(tmp_path))])
    assert len(keys) == 60 and len(set(keys.values())) == 20
    rows = _rows(keys)
    ds = Dataset.from_list(rows)
    kw = dict(batch_size=6, drop_last=False, generator=torch.Generator(), seed=3)

    plain = list(NoDuplicatesBatchSampler(ds, **kw))
    assert _twin_meetings(plain, rows, keys) > 0  # without the senses, twins do meet as negatives

    sampler = SenseBatches(keys)(ds, **kw)
    batches = list(sampler)
    assert _twin_meetings(batches, rows, keys) == 0
    seen = [i for b in batches for i in b]
    assert sorted(seen) == list(range(len(rows)))  # every row once per epoch: deferred, never dropped
    texts = [[rows[i][c] for i in b for c in ("anchor", "positive", "negative")] for b in batches]
    assert all(len(t) == len(set(t)) for t in texts)  # the no-duplicates rule still holds
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new shuffle each epoch
    assert repr(SenseBatches(keys)) == "SenseBatches(20 senses)"


def test_sense_keys_are_the_documents_convert_writes(tmp_path):
    from trajtune.converters.tool_retrieval import load_tools, tool_document

    path = _catalog(tmp_path, n_senses=2, styles=2)
    keys = sense_keys([str(path)])
    assert set(keys) == {tool_document(t) for t in load_tools(path)}
    assert keys["getThing0: Get thing number 0. (parameters: id)"] == keys["get_thing_0: Get thing number 0, given id. (parameters: id)"]


def test_validation_counts_a_twin_ranked_first_as_relevant_when_senses_are_given(tmp_path):
    from trajtune.scripts.train_embed import ir_task

    keys = sense_keys([str(_catalog(tmp_path, n_senses=3, styles=2))])
    docs = sorted(keys)
    twin = {d: [e for e in docs if e != d and keys[e] == keys[d]][0] for d in docs}
    train = [{"anchor": "get thing 0", "positive": docs[0], "negative": docs[2]},
             {"anchor": "get thing 9", "positive": twin[docs[1]], "negative": docs[4]}]
    ev = [{"anchor": "fetch the thing", "positive": docs[1], "negative": docs[2]}]
    queries, corpus, relevant = ir_task(train, ev)
    (q,) = queries
    assert {corpus[d] for d in relevant[q]} == {docs[1]}  # strict without senses
    queries, corpus, relevant = ir_task(train, ev, keys)
    assert {corpus[d] for d in relevant[q]} == {docs[1], twin[docs[1]]}
