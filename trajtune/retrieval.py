"""Retrieval evaluation: rank a corpus for each query with an embedding model, score the ranking,
compare two models on the same queries.

``trajtune evaluate`` hands over here (``evaluate --corpus FILE``, or a tasks file of retrieval
queries); the tool-call path of ``scripts/evaluate.py`` is not involved. Inputs:

* **retrieval queries** (JSONL): ``{"id", "query", "relevant": [doc id, ...], "metadata"?}``;
  documents ``{"id", "text"}`` (or ``"document"``) in the same file or in ``--corpus``;
* **task records** (``trajtune generate tasks``, BFCL, ...): the request is the prompt's last user
  turn, the relevant ids are the names of the expected calls' tools (no-call tasks are skipped,
  counted), the corpus is ``--corpus`` (any tool catalog: OpenAI tools JSON, our YAML; or a JSONL
  of records, for the union of the tools they offer) or else every tool the tasks offer. Tools are
  indexed as ``converters.tool_retrieval.tool_document`` renders them, the text train-embed trains on.

Per query (``predictions.jsonl``, appended as it goes, keyed by model + query, so a re-run skips
what is done): the top 10 ids, the rank of the first relevant document, hit@1, recall@1/5/10
(share of the relevant documents in the top k), MRR@10 and nDCG@10 (binary gains). Two models:
exact McNemar test on hit@1 (the discordant queries), and a paired bootstrap 95% interval of the
MRR@10 difference (10,000 resamples of the queries, seeded). A model trained by train-embed
carries the digests of the documents it was trained on (``final/trajtune_embed.json``): queries
whose relevant documents it never saw are reported apart (``unseen``), for both models.

Twins: the synthetic APIs hold one function in several naming styles (``x-trajtune`` ``sense``:
``searchDirectFlights`` and ``search_direct_flights``, descriptions alike), which no request can
tell apart. With ``--equivalents`` (the default) a relevant tool's twins are left out of that
query's ranking (``equivalents_set_aside`` in its prediction), so a twin ranked first is neither a
hit nor a miss; ``--no-equivalents`` counts it as a miss.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trajtune.errors import ConfigError, DataError, UsageError

KS = (1, 5, 10)
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
BOOTSTRAP = 10_000


@dataclass
class RetrievalSet:
    queries: dict[str, str] = field(default_factory=dict)  # query id -> text
    relevant: dict[str, list[str]] = field(default_factory=dict)  # query id -> relevant doc ids
    corpus: dict[str, str] = field(default_factory=dict)  # doc id -> text
    meta: dict[str, dict] = field(default_factory=dict)  # query id -> metadata
    # query id -> doc ids the catalog declares the same function as a relevant one (another naming
    # style of one sense): left out of that query's ranking, neither hit nor miss
    equivalent: dict[str, set[str]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = "retrieval"  # "retrieval" | "tasks"


def _first_obj(path: str) -> Any:
    from trajtune.jsonl import read_jsonl

    for row in read_jsonl(path):
        return row.obj
    return None


def is_retrieval_file(path: str) -> bool:
    """A file of retrieval queries/documents (not task records): its first row is a query or a document."""
    if path == "-" or not Path(path).is_file():
        return False
    try:
        obj = _first_obj(path)
    except Exception:  # an unreadable file is the tool-call path's to report
        return False
    return isinstance(obj, dict) and "prompt" not in obj and ("query" in obj or ("id" in obj and _doc_row(obj) is not None))


def _doc_row(obj: dict) -> str | None:
    text = obj.get("text", obj.get("document"))
    return text if isinstance(text, str) else None


def load_corpus(path: str) -> dict[str, str]:
    """Documents from ``--corpus``: a JSONL of ``{"id", "text"}`` rows, or any tool catalog."""
    from trajtune.converters.tool_retrieval import load_tools, tool_document, tool_fields

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--corpus {path}: no such file or folder")
    if p.suffix == ".jsonl":
        first = _first_obj(path)
        if isinstance(first, dict) and "id" in first and _doc_row(first) is not None:
            from trajtune.jsonl import read_jsonl

            docs: dict[str, str] = {}
            for row in read_jsonl(path):
                o = row.obj
                text = _doc_row(o) if isinstance(o, dict) else None
                if not isinstance(o, dict) or not isinstance(o.get("id"), str) or not text or not text.strip():
                    raise DataError("a document needs a string id and a non-empty text", path=row.path, line=row.lineno)
                if o["id"] in docs:
                    raise DataError(f"duplicate document id {o['id'][:64]!r}", path=row.path, line=row.lineno)
                docs[o["id"]] = text
            return docs
        if isinstance(first, dict) and isinstance(first.get("tools"), list):  # records: the tools they offer
            return offered_tools(path)
    return {tool_fields(t)[0]: tool_document(t) for t in load_tools(p)}


def offered_tools(path: str) -> dict[str, str]:
    """The union of the tools that a JSONL of records (tasks, sft) offers, the first spec of each name
    kept: ``evaluate TASKS --corpus TASKS`` ranks every tool any task offers (e.g. BFCL's functions)."""
    from trajtune.jsonl import read_jsonl

    docs: dict[str, str] = {}
    for row in read_jsonl(path):
        add_offered(docs, row)
    return docs


def add_offered(docs: dict[str, str], row: Any) -> None:
    """Add the tools one record offers to ``docs`` (name -> indexed text); a name seen before keeps its first spec."""
    from trajtune.converters.tool_retrieval import tool_document, tool_fields

    tools = row.obj.get("tools") if isinstance(row.obj, dict) else None
    for t in tools if isinstance(tools, list) else []:
        try:
            name = tool_fields(t)[0]
        except (TypeError, ValueError) as exc:
            raise DataError(f"a tool the record offers is malformed ({exc})", path=row.path, line=row.lineno) from None
        if name not in docs:
            docs[name] = tool_document(t)


def load_set(tasks: str, corpus: str | None = None, limit: int | None = None, equivalents: bool = False) -> RetrievalSet:
    """Queries, relevant ids and corpus from a retrieval file or task records (module doc). With
    ``equivalents`` and a catalog whose tools carry a ``sense`` (the synthetic APIs), each query's
    same-sense twins of its relevant tools are set aside (:attr:`RetrievalSet.equivalent`)."""
    from trajtune.converters.tool_retrieval import requests_and_calls
    from trajtune.jsonl import read_jsonl
    from trajtune.records import schema_error

    if tasks != "-" and not Path(tasks).is_file():
        raise UsageError(f"task file not found: {tasks}")
    rs = RetrievalSet()
    offered: dict[str, str] = {}
    where: dict[str, tuple[str, int]] = {}
    for row in read_jsonl(tasks):
        o = row.obj
        if not isinstance(o, dict):
            raise DataError("not a JSON object", path=row.path, line=row.lineno)
        if "query" in o:
            ok = isinstance(o.get("id"), str) and o["id"] and isinstance(o["query"], str) and o["query"].strip() \
                and isinstance(o.get("relevant"), list) and o["relevant"] and all(isinstance(r, str) for r in o["relevant"])
            if not ok:
                raise DataError("a retrieval query needs a string id, a non-empty query and a non-empty list of "
                                "relevant document ids", path=row.path, line=row.lineno)
            qid, text, rel = o["id"], o["query"], list(dict.fromkeys(o["relevant"]))
        elif "prompt" in o and "expected" in o:
            bad = schema_error(o, "task")
            if bad:
                raise DataError(f"not a valid task ({bad[1]}: {bad[0][:200]})", path=row.path, line=row.lineno,
                                hint="run `trajtune validate` on the file")
            add_offered(offered, row)
            pairs = requests_and_calls(o)
            if not pairs:
                rs.skipped["no expected call"] = rs.skipped.get("no expected call", 0) + 1
                continue
            qid, (text, rel) = o["id"], pairs[0]
            rs.source = "tasks"
        elif "id" in o and _doc_row(o) is not None:
            if o["id"] in rs.corpus:
                raise DataError(f"duplicate document id {str(o['id'])[:64]!r}", path=row.path, line=row.lineno)
            rs.corpus[str(o["id"])] = _doc_row(o)
            continue
        else:
            raise DataError("neither a retrieval query (id, query, relevant), a document (id, text) nor a task record",
                            path=row.path, line=row.lineno)
        if qid in rs.queries:
            raise DataError(f"duplicate query id {qid[:64]!r} (first on line {where[qid][1]})", path=row.path, line=row.lineno)
        if limit is None or len(rs.queries) < limit:
            rs.queries[qid], rs.relevant[qid] = text, rel
            rs.meta[qid] = o.get("metadata") if isinstance(o.get("metadata"), dict) else {}
            where[qid] = (row.path, row.lineno)
    if corpus and Path(corpus).resolve() == Path(tasks).resolve():  # the tasks' own tools: already read
        rs.corpus.update(offered)
    elif corpus:
        rs.corpus.update(load_corpus(corpus))
    elif not rs.corpus:
        rs.corpus = offered
    if not rs.queries:
        raise DataError("no queries to rank (no retrieval query, and no task that expects a call)", path=tasks)
    if len(rs.corpus) < 2:
        raise DataError(f"the corpus has {len(rs.corpus)} document(s); ranking needs at least 2",
                        hint="pass --corpus with a tool catalog or a documents JSONL")
    for qid, rel in rs.relevant.items():
        missing = [r for r in rel if r not in rs.corpus]
        if missing:
            path, line = where[qid]
            raise DataError(f"relevant id {missing[0][:64]!r} of query {qid[:64]!r} is not in the corpus",
                            path=path, line=line, hint="pass the --corpus that holds it")
    if equivalents and corpus and Path(corpus).resolve() != Path(tasks).resolve() and Path(corpus).suffix != ".jsonl":
        from trajtune.converters.tool_retrieval import tool_meta

        sense = {n: m["sense"] for n, m in tool_meta(corpus).items() if n in rs.corpus and isinstance(m.get("sense"), str)}
        by_sense: dict[str, set[str]] = {}
        for n, sn in sense.items():
            by_sense.setdefault(sn, set()).add(n)
        for qid, rel in rs.relevant.items():
            twins = {d for r in rel if r in sense for d in by_sense[sense[r]]} - set(rel)
            if twins:
                rs.equivalent[qid] = twins
    return rs


# ---------------------------------------------------------------------------------------------
# scoring


def score_ranking(ranking: list[str], relevant: list[str]) -> dict:
    """Metrics of one query: ``ranking`` is every doc id, best first."""
    rel = set(relevant)
    rank = next((i + 1 for i, d in enumerate(ranking) if d in rel), None)
    out: dict[str, Any] = {"first_relevant_rank": rank, "hit@1": bool(rank == 1)}
    for k in KS:
        out[f"recall@{k}"] = round(len(rel & set(ranking[:k])) / len(rel), 6)
    out["mrr@10"] = round(1.0 / rank, 6) if rank is not None and rank <= 10 else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranking[:10]) if d in rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), 10)))
    out["ndcg@10"] = round(dcg / ideal, 6) if ideal else 0.0
    return out


def rank_all(model: Any, rs: RetrievalSet, qids: list[str], batch_size: int,
             top_n: int = 10) -> tuple[list[list[str]], list[list[float]]]:
    """Every doc id for each query, best first (cosine similarity of normalised embeddings; ties
    keep corpus order), and the top ``top_n`` scores."""
    import torch

    ids = list(rs.corpus)
    with torch.inference_mode():
        docs = model.encode([rs.corpus[d] for d in ids], batch_size=batch_size, convert_to_tensor=True,
                            normalize_embeddings=True, show_progress_bar=False)
        qs = model.encode([rs.queries[q] for q in qids], batch_size=batch_size, convert_to_tensor=True,
                          normalize_embeddings=True, show_progress_bar=False)
        sims = (qs @ docs.T).float().cpu()
    order = torch.sort(sims, dim=1, descending=True, stable=True)
    rankings = [[ids[j] for j in row] for row in order.indices.tolist()]
    top = [[round(float(s), 6) for s in row[:top_n]] for row in order.values.tolist()]
    return rankings, top


def metrics(preds: list[dict], groups: dict[str, dict[str, str]]) -> dict:
    """Means over queries, and the same by each grouping (``groups[name][query id] = group``)."""
    def mean(rows: list[dict]) -> dict:
        n = len(rows)
        out: dict[str, Any] = {"queries": n}
        for m in METRICS:
            out[m] = round(sum(r[m] for r in rows) / n, 4) if n else None
        return out

    out = mean(preds)
    out["by"] = {}
    for name, of in groups.items():
        buckets: dict[str, list[dict]] = {}
        for p in preds:
            buckets.setdefault(of.get(p["task_id"], "(none)"), []).append(p)
        if len(buckets) > 1 or name == "trained_on":
            out["by"][name] = {k: mean(v) for k, v in sorted(buckets.items())}
    return out


def compare(base: list[dict], tuned: list[dict], *, seed: int = 0) -> dict:
    """Paired comparison on the queries both ranked: exact McNemar on hit@1, paired bootstrap 95%
    interval of the MRR@10 difference (tuned - baseline)."""
    import numpy as np
    from scipy.stats import binomtest

    b = {p["task_id"]: p for p in base}
    t = {p["task_id"]: p for p in tuned}
    common = sorted(set(b) & set(t))
    n = len(common)
    fixed = sum(1 for q in common if t[q]["hit@1"] and not b[q]["hit@1"])
    broken = sum(1 for q in common if b[q]["hit@1"] and not t[q]["hit@1"])
    p = binomtest(fixed, fixed + broken, 0.5).pvalue if fixed + broken else 1.0
    d = np.array([t[q]["mrr@10"] - b[q]["mrr@10"] for q in common], dtype=np.float64)
    lo = hi = float(d.mean()) if n else 0.0
    if n > 1:
        rng = np.random.default_rng(seed)
        means = np.concatenate([d[rng.integers(0, n, size=(min(1000, BOOTSTRAP - i), n))].mean(axis=1)
                                for i in range(0, BOOTSTRAP, 1000)])
        lo, hi = (float(x) for x in np.percentile(means, [2.5, 97.5]))

    def rate(rows: dict, key: str) -> float:
        return round(sum(rows[q][key] for q in common) / n, 4) if n else 0.0

    return {"paired_queries": n, "baseline_recall@1": rate(b, "recall@1"), "tuned_recall@1": rate(t, "recall@1"),
            "recall@1_points": round(100 * (rate(t, "recall@1") - rate(b, "recall@1")), 2),
            "fixed": fixed, "broken": broken, "mcnemar_p": float(p), "significant": bool(p < 0.05),
            "baseline_mrr@10": rate(b, "mrr@10"), "tuned_mrr@10": rate(t, "mrr@10"),
            "mrr@10_diff": round(float(d.mean()), 4) if n else 0.0,
            "mrr@10_diff_ci95": [round(lo, 4), round(hi, 4)], "bootstrap_resamples": BOOTSTRAP if n > 1 else 0}


# ---------------------------------------------------------------------------------------------
# the evaluate path


@dataclass
class EmbedSpec:
    role: str
    source: str  # as given
    path: str  # resolved
    key: str = ""

    @property
    def label(self) -> str:
        return self.path


def _spec(role: str, source: str, rs: RetrievalSet, cfg: Any) -> EmbedSpec:
    from trajtune.models import resolve_embed_model
    from trajtune.records import content_id

    path = resolve_embed_model(source)
    corpus_digest = content_id(sorted(rs.corpus.items()) if not rs.equivalent else  # twins set aside: other rankings
                               [sorted(rs.corpus.items()), sorted((q, sorted(e)) for q, e in rs.equivalent.items())])
    ident = {"model": str(Path(path).resolve()) if Path(path).exists() else path, "corpus": corpus_digest}
    return EmbedSpec(role, source, path, content_id(ident, prefix=f"{role}-")[: len(role) + 9])


def _groups(rs: RetrievalSet, tuned_path: str) -> dict[str, dict[str, str]]:
    from trajtune.embeddings import text_digest, trained_digests

    groups: dict[str, dict[str, str]] = {
        "category": {q: str(m.get("category", "(none)")) for q, m in rs.meta.items()}}
    seen = trained_digests(tuned_path)
    if seen is not None:
        groups["trained_on"] = {q: "seen" if any(text_digest(rs.corpus[d]) in seen for d in rel) else "unseen"
                                for q, rel in rs.relevant.items()}
    return groups


def run_model(spec: EmbedSpec, rs: RetrievalSet, cfg: Any, appender, say: Callable[[str], None]) -> dict:
    from trajtune import embeddings
    from trajtune.models import pick_device

    todo = [q for q in rs.queries if f"{spec.key}:{q}" not in appender.existing_ids]
    info = {"done_before": len(rs.queries) - len(todo), "scored_now": len(todo), "backend": None, "seconds": 0.0}
    if not todo:
        say(f"{spec.role}: all {len(rs.queries)} queries already in predictions.jsonl")
        return info
    say(f"{spec.role}: loading {spec.label}")
    model = embeddings.load(spec.path, device=pick_device(), trust_remote_code=cfg.trust_remote_code)
    info["backend"] = "sentence-transformers"
    t0 = time.perf_counter()
    rankings, tops = rank_all(model, rs, todo, cfg.batch_size,
                              top_n=10 + max((len(e) for e in rs.equivalent.values()), default=0))
    info["seconds"] = round(time.perf_counter() - t0, 3)
    per_query = info["seconds"] / len(todo)
    for q, ranking, top in zip(todo, rankings, tops):
        twins = rs.equivalent.get(q)
        if twins:  # the same function in another naming style: neither a hit nor a miss
            keep = [i for i, d in enumerate(ranking[:len(top)]) if d not in twins][:10]
            top = [top[i] for i in keep]
            ranking = [d for d in ranking if d not in twins]
        s = score_ranking(ranking, rs.relevant[q])
        top = top[:10]
        appender.write({"id": f"{spec.key}:{q}", "task_id": q, "model": spec.role, "model_key": spec.key,
                        "model_path": spec.label, "kind": "retrieval", "relevant": rs.relevant[q],
                        **({"equivalents_set_aside": sorted(twins)} if twins else {}),
                        "top": ranking[:10], "top_scores": top, **s, "latency_s": round(per_query, 5)})
    say(f"{spec.role}: {len(todo)} queries ranked against {len(rs.corpus)} documents in {info['seconds']:.1f} s")
    del model
    return info


def evaluate(cfg: Any, say: Callable[[str], None] | None = None) -> dict:
    """evaluate's retrieval path: the same folder layout (config.yaml, predictions.jsonl,
    report.json, report.md) and the same resume rule as the tool-call path."""
    from trajtune import config as cfglib
    from trajtune import embeddings
    from trajtune.jsonl import Appender, atomic_writer, read_jsonl, write_json
    from trajtune.paths import guard

    say = say or (lambda msg: None)
    out = Path(cfg.output)
    if cfg.adapter:
        raise UsageError("--adapter applies to language models; an embedding model from train-embed is a whole "
                         "folder", hint="pass it as --model RUN/final")
    guard({"TASKS": cfg.tasks, "--model": cfg.model, "--baseline": cfg.baseline, "--corpus": cfg.corpus},
          files={name: out / name for name in ("predictions.jsonl", "report.json", "report.md", "config.yaml")},
          dirs={"--output": out})
    rs = load_set(cfg.tasks, cfg.corpus, cfg.limit, equivalents=getattr(cfg, "equivalents", False))
    tuned_role = "tuned" if cfg.baseline else "model"
    specs = [_spec(tuned_role, cfg.model, rs, cfg)]
    if cfg.baseline:
        base = cfg.baseline
        if base == "base":
            base = embeddings.base_of(specs[0].path)
            if not base:
                raise UsageError("--baseline base compares a train-embed model with the model it was trained from, "
                                 f"but {cfg.model} names none (no {embeddings.MANIFEST})",
                                 hint="pass --baseline default or another model folder")
        specs.insert(0, _spec("baseline", base, rs, cfg))
    out.mkdir(parents=True, exist_ok=True)
    cfglib.save(cfg, out / "config.yaml")
    say(f"{len(rs.queries)} queries, {len(rs.corpus)} documents"
        + (f"; skipped: {', '.join(f'{v} {k}' for k, v in rs.skipped.items())}" if rs.skipped else ""))

    runs = {}
    with Appender(out / "predictions.jsonl") as app:
        if app.existing:
            say(f"resuming: {app.existing} predictions already in {out / 'predictions.jsonl'}")
        for spec in specs:
            runs[spec.role] = run_model(spec, rs, cfg, app, say)

    preds: dict[str, dict[str, dict]] = {s.key: {} for s in specs}
    for row in read_jsonl(out / "predictions.jsonl"):
        p = row.obj
        if p.get("model_key") in preds and p.get("task_id") in rs.queries:
            preds[p["model_key"]][p["task_id"]] = p
    groups = _groups(rs, specs[-1].path)
    report: dict[str, Any] = {"kind": "retrieval", "tasks_file": cfg.tasks, "corpus": cfg.corpus or "(the tasks' tools)",
                              "tasks": len(rs.queries), "documents": len(rs.corpus), "skipped": rs.skipped,
                              "queries_with_equivalents_set_aside": len(rs.equivalent),
                              "output": str(out), "models": {}}
    for s in specs:
        plist = [preds[s.key][q] for q in rs.queries if q in preds[s.key]]
        report["models"][s.role] = {"model": s.label, "key": s.key, **runs[s.role], "metrics": metrics(plist, groups)}
    if cfg.baseline:
        b, t = list(preds[specs[0].key].values()), list(preds[specs[1].key].values())
        report["comparison"] = compare(b, t)
        if "trained_on" in groups:
            unseen = {q for q, g in groups["trained_on"].items() if g == "unseen"}
            if unseen:
                report["comparison_unseen"] = compare([p for p in b if p["task_id"] in unseen],
                                                      [p for p in t if p["task_id"] in unseen])
    write_json(out / "report.json", report)
    with atomic_writer(out / "report.md", "w") as fh:
        fh.write(render_markdown(report))
    return report


# ---------------------------------------------------------------------------------------------
# report.md and the terminal table


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


ROWS = [("recall@1", "recall@1"), ("recall@5", "recall@5"), ("recall@10", "recall@10"), ("MRR@10", "mrr@10"),
        ("nDCG@10", "ndcg@10")]


def _comparison_rows(c: dict, label: str = "") -> list[list[str]]:
    lo, hi = c["mrr@10_diff_ci95"]
    return [[f"recall@1 improvement{label}", "", f"{c['recall@1_points']:+.1f} points ({c['fixed']} fixed, {c['broken']} broken)"],
            [f"McNemar p on hit@1{label} (paired, exact)", "",
             f"{c['mcnemar_p']:.4g}" + (" (significant)" if c["significant"] else " (not significant)")],
            [f"MRR@10 difference{label} (95% paired bootstrap)", "", f"{c['mrr@10_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"]]


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    roles = list(report["models"])
    rows = [[label] + [_num(report["models"][r]["metrics"].get(key)) for r in roles] for label, key in ROWS]
    rows.append(["queries"] + [str(report["models"][r]["metrics"]["queries"]) for r in roles])
    unseen = [report["models"][r]["metrics"]["by"].get("trained_on", {}).get("unseen") for r in roles]
    if any(unseen):
        rows.append(["recall@1, documents never trained on"] + [_num(u["recall@1"]) if u else "-" for u in unseen])
    if report.get("comparison"):
        rows += _comparison_rows(report["comparison"])
    if report.get("comparison_unseen"):
        rows += _comparison_rows(report["comparison_unseen"], ", unseen")
    return ["metric", *roles], rows


def render_markdown(report: dict) -> str:
    head, rows = table_rows(report)
    lines = ["# Retrieval evaluation report", "",
             f"Queries: `{report['tasks_file']}` ({report['tasks']} queries), corpus: `{report['corpus']}` "
             f"({report['documents']} documents)", ""]
    if report.get("skipped"):
        lines += ["Skipped: " + ", ".join(f"{v} {k}" for k, v in report["skipped"].items()), ""]
    if report.get("queries_with_equivalents_set_aside"):
        lines += [f"Equivalents: for {report['queries_with_equivalents_set_aside']} queries, tools the catalog declares "
                  "the same function as a relevant one (another naming style) were left out of the ranking "
                  "(--no-equivalents counts them as misses).", ""]
    for role, m in report["models"].items():
        lines.append(f"- **{role}**: `{m['model']}` ({m['backend'] or 'from predictions.jsonl'})")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "recall@k: share of a query's relevant documents in the top k (for one relevant document, hit@k). "
              "MRR@10: 1/rank of the first relevant document, 0 beyond 10. nDCG@10: binary gains. McNemar: exact "
              "test on the queries where exactly one model ranks a relevant document first. Bootstrap: "
              f"{BOOTSTRAP:,} resamples of the paired queries."]
    roles = list(report["models"])
    names = sorted({g for m in report["models"].values() for g in m["metrics"]["by"]})
    for g in names:
        keys = sorted({k for m in report["models"].values() for k in m["metrics"]["by"].get(g, {})})
        lines += ["", f"## By {g.replace('_', ' ')}", "",
                  f"| {g} | queries | " + " | ".join(f"{r} recall@1 | {r} MRR@10" for r in roles) + " |",
                  "|---|---|" + "---|---|" * len(roles)]
        for k in keys:
            cells = [report["models"][r]["metrics"]["by"].get(g, {}).get(k, {}) for r in roles]
            lines.append(f"| {k} | {max(c.get('queries', 0) for c in cells)} | "
                         + " | ".join(f"{_num(c.get('recall@1'))} | {_num(c.get('mrr@10'))}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def rich_table(report: dict):
    from rich.table import Table

    head, rows = table_rows(report)
    table = Table(title=f"evaluate (retrieval): {report['tasks']} queries, {report['documents']} documents")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    return table


def holdout_texts(path: str) -> tuple[set[str], set[str]]:
    """(query texts, document digests) of a held-out file (retrieval queries, task records or
    triplets): train-embed keeps them out of training."""
    from trajtune.embeddings import text_digest
    from trajtune.jsonl import read_jsonl

    first = _first_obj(path) if Path(path).is_file() else None
    if isinstance(first, dict) and "anchor" in first:
        qs, ds = set(), set()
        for row in read_jsonl(path):
            o = row.obj
            if isinstance(o, dict):
                qs.add(" ".join(str(o.get("anchor", "")).split()).lower())
                ds.add(text_digest(str(o.get("positive", ""))))
        return qs, ds
    rs = load_set(path)
    qs = {" ".join(t.split()).lower() for t in rs.queries.values()}
    ds = {text_digest(rs.corpus[d]) for rel in rs.relevant.values() for d in rel}
    return qs, ds


def check_corpus_arg(corpus: str | None) -> None:
    if corpus == "-":
        raise ConfigError("--corpus must be a file or folder, not '-'")
