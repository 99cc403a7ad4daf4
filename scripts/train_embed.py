"""train-embed: fine-tune an embedding model (sentence-transformers) on triplet records.

``trajtune train-embed TRIPLETS... -o RUN_DIR``; the same command line runs as
``python -m trajtune.scripts.train_embed ...``. The run skeleton (run folder, resume from the
newest complete checkpoint, validation + review gate before any model loads, the 90/10 split by
anchor, SIGINT/SIGTERM -> checkpoint, final/ swapped in whole, training_summary.json) is
:func:`trajtune.training.run_training`, shared with train-sft and train-dpo. The engine is
sentence-transformers' ``SentenceTransformerTrainer`` (:mod:`trajtune.embeddings`).

What it does, top to bottom:
  1) held-out files (``--holdout``: the evaluation's tasks or queries) keep their requests and
     relevant documents out of training and validation; texts longer than ``max_length`` tokens are
     dropped or cut;
  2) the model: ``default`` is all-MiniLM-L6-v2 (from its PyPI wheel); full fine-tuning or LoRA on
     the encoder; optional hard negatives mined with the base model
     (``sentence_transformers.util.mine_hard_negatives``, ``--mine-negatives N``);
  3) the loss: MultipleNegativesRankingLoss (default: in-batch negatives plus each record's hard
     negative, a no-duplicates batch sampler so no text is its own negative; with
     ``--equivalents-from CATALOG`` no two same-sense tools either), its cached (GradCache) form for
     large batches, or TripletLoss;
  4) validation: the held-out triplets as a retrieval task (their anchors against every document of
     the data), scored by sentence-transformers' InformationRetrievalEvaluator; the best checkpoint
     by ``eval_metric`` (MRR@10 by default) is restored and early stopping watches it;
  5) final/ is a plain sentence-transformers folder (a LoRA is merged in) with
     ``trajtune_embed.json``: the base model and the digests of the documents trained on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError
from trajtune.training import redefault

NAME = "train-embed"
METRIC_KEYS = {"mrr@10": "mrr@10", "ndcg@10": "ndcg@10", "recall@1": "recall@1", "recall@10": "recall@10"}


@dataclass
class Config(training.TrainConfig):
    """train-embed's options: the shared TrainConfig, the defaults of embedding training, and its own."""

    data: list[str] = field(default_factory=list, positional=True, metavar="DATA",
                            help="triplet JSONL files (anchor, positive, negative): e.g. `trajtune convert --to triplet` of sft or task records")
    model: str = field("default", help="embedding model: a sentence-transformers folder, a transformers encoder folder, hub id (org/name), or 'default' (all-MiniLM-L6-v2)")
    method: Literal["lora", "full", "qlora"] = redefault("method", "full")
    max_length: int = redefault("max_length", 128)
    batch_size: int = redefault("batch_size", 32)
    learning_rate: float = redefault("learning_rate", 2e-5)
    gradient_checkpointing: Any = redefault("gradient_checkpointing", False)
    loss: Literal["mnrl", "cached_mnrl", "triplet"] = field("mnrl", help="mnrl: MultipleNegativesRankingLoss (in-batch negatives + the hard negative); cached_mnrl: the same with GradCache (large batches in little memory); triplet: TripletLoss (anchor-positive vs anchor-negative distance)")
    scale: float = field(20.0, help="mnrl / cached_mnrl: similarity scale (inverse temperature)")
    mini_batch_size: int = field(32, help="cached_mnrl: texts per forward pass")
    triplet_margin: float = field(5.0, help="triplet: distance margin")
    use_negatives: bool = field(True, help="train on each record's negative (off: anchor/positive pairs with in-batch negatives only)")
    mine_negatives: int = field(0, help="mine this many hard negatives per anchor with the base model (sentence_transformers.util.mine_hard_negatives) from all documents of the data; 0 = off")
    holdout: list[str] = field(default_factory=list, split=False, metavar="FILE", help="evaluation files (task records, retrieval queries or triplets) whose requests and relevant documents are kept out of training and validation")
    equivalents_from: list[str] = field(default_factory=list, split=False, metavar="CATALOG", help="catalogs whose tools declare a sense (x-trajtune: the synthetic APIs of `generate tools`): two documents of one sense (the same function in another naming style) never share a batch, so neither is the other's false in-batch negative, and validation counts a relevant tool's twins as relevant too (mnrl / cached_mnrl)")
    eval_split_by: Literal["anchor", "document"] = field("anchor", help="the automatic validation split (without eval_data): anchor holds out ~eval_fraction of the requests; document holds out whole tools: every triplet whose positive is one of them (with equivalents_from, a sense with all its spellings), and training drops those triplets' requests, so validation asks for tools never trained on as positives, as the README's evaluation does")
    eval_metric: Literal["mrr@10", "ndcg@10", "recall@1", "recall@10", "loss"] = field("mrr@10", help="validation metric for the best checkpoint and early stopping (retrieval of the held-out anchors, or the eval loss)")

    def check(self) -> None:
        super().check()
        if self.method == "qlora":
            raise ConfigError("train-embed: method is full or lora (4-bit QLoRA is for causal LMs)")
        if self.gradient_checkpointing == "auto":
            raise ConfigError("train-embed: gradient_checkpointing is true or false")
        if self.loss == "triplet" and not self.use_negatives and self.mine_negatives <= 0:
            raise ConfigError("loss: triplet needs negatives", hint="keep use_negatives on, mine some, or use loss: mnrl")
        if self.mine_negatives < 0 or self.mini_batch_size < 1:
            raise ConfigError("mine_negatives must be >= 0 and mini_batch_size >= 1")
        if self.scale <= 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        if self.equivalents_from and self.loss == "triplet":
            raise ConfigError("equivalents_from keeps twins out of in-batch negatives; loss: triplet has none",
                              hint="use loss: mnrl or cached_mnrl, or drop equivalents_from")


# ---------------------------------------------------------------------------------------------
# data


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def keep_out(records: list[dict], held_queries: set[str], held_docs: set[str]) -> tuple[list[dict], int]:
    """Records whose anchor is a held-out request or whose positive or negative is a held-out
    document are dropped (the evaluation must run on requests and documents never trained on)."""
    from trajtune.embeddings import text_digest

    kept = [r for r in records if _norm(r["anchor"]) not in held_queries
            and text_digest(r["positive"]) not in held_docs and text_digest(r["negative"]) not in held_docs]
    return kept, len(records) - len(kept)


def split_by_document(records: list[dict], fraction: float, seed: int, senses: dict[str, str]) -> tuple[list[dict], list[dict], int]:
    """(train, validation, dropped): hold out whole positive documents (grouped by sense where
    ``senses`` knows one) until ~``fraction`` of the records are held; training keeps no record
    whose anchor is a validation request. Copies made by mixing weights share their positive, so
    they land on one side."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(senses.get(r["positive"], "doc:" + r["positive"]), []).append(i)
    held = training.hold_out_groups(groups, len(records), fraction, seed)
    ev, seen = [], set()
    for i in sorted(held):
        r = records[i]
        k = (r["anchor"], r["positive"], r["negative"])
        if k not in seen:
            seen.add(k)
            ev.append(r)
    asks = {_norm(r["anchor"]) for r in ev}
    rest = [r for i, r in enumerate(records) if i not in held]
    train = [r for r in rest if _norm(r["anchor"]) not in asks]
    return train, ev, len(rest) - len(train)


def fit_length(records: list[dict], tokenizer: Any, max_length: int, truncation: str) -> tuple[list[dict], dict]:
    """Drop (or count as cut: the model truncates at max_length) records with a text longer than max_length tokens."""
    counts = {"kept": 0, "dropped_too_long": 0, "truncated": 0}
    out = []
    for r in records:
        n = max(len(tokenizer(r[k], add_special_tokens=True)["input_ids"]) for k in ("anchor", "positive", "negative"))
        if n > max_length:
            if truncation == "drop":
                counts["dropped_too_long"] += 1
                continue
            counts["truncated"] += 1
        out.append(r)
        counts["kept"] += 1
    return out, counts


def ir_task(train: list[dict], ev: list[dict], senses: dict[str, str] | None = None) -> tuple[dict, dict, dict]:
    """The validation retrieval task: each held-out anchor against every document of the data
    (positives and negatives of both sides); relevant = its positives, and with ``senses``
    (``--equivalents-from``) their same-sense twins too: a twin ranked first is no miss, as
    ``evaluate --corpus`` sets it aside, or the best checkpoint would be chosen for telling twins
    apart, which the sampler no longer teaches."""
    corpus: dict[str, str] = {}
    ids: dict[str, str] = {}

    def doc(text: str) -> str:
        if text not in ids:
            ids[text] = f"d{len(ids)}"
            corpus[ids[text]] = text
        return ids[text]

    for r in [*ev, *train]:
        doc(r["positive"]), doc(r["negative"])
    queries: dict[str, str] = {}
    qids: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for r in ev:
        q = qids.setdefault(r["anchor"], f"q{len(qids)}")
        queries[q] = r["anchor"]
        relevant.setdefault(q, set()).add(ids[r["positive"]])
    if senses:
        by_sense: dict[str, set[str]] = {}
        for text, i in ids.items():
            if text in senses:
                by_sense.setdefault(senses[text], set()).add(i)
        for q, rel in relevant.items():
            rel |= {t for d in list(rel) if corpus[d] in senses for t in by_sense[senses[corpus[d]]]}
    return queries, corpus, relevant


def mine(model: Any, rows: list[dict], corpus: list[str], n: int, batch_size: int) -> list[dict]:
    """(anchor, positive, mined negative) rows: ``n`` per anchor/positive pair, the most similar
    documents under the base model that are no positive of that anchor."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    pairs = Dataset.from_list([{"anchor": r["anchor"], "positive": r["positive"]} for r in rows])
    mined = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=n, sampling_strategy="top",
                                relative_margin=0.05, output_format="triplet", batch_size=batch_size, verbose=False)
    return [{"anchor": m["anchor"], "positive": m["positive"], "negative": m["negative"]} for m in mined]


# ---------------------------------------------------------------------------------------------
# the stage


def make_loss(cfg: Config, model: Any) -> Any:
    from sentence_transformers.sentence_transformer import losses

    if cfg.loss == "triplet":
        return losses.TripletLoss(model, triplet_margin=cfg.triplet_margin)
    if cfg.loss == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size)
    return losses.MultipleNegativesRankingLoss(model, scale=cfg.scale)


def setup(ctx: training.RunContext) -> training.Setup:
    """Hold out, fit lengths, load the model (+ LoRA), mine negatives, build the trainer."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from transformers import set_seed

    from trajtune import embeddings
    from trajtune.retrieval import holdout_texts

    cfg, data, precision, run_dir = ctx.cfg, ctx.data, ctx.precision, ctx.run_dir
    held_q: set[str] = set()
    held_d: set[str] = set()
    for path in cfg.holdout:
        q, d = holdout_texts(path)
        held_q |= q
        held_d |= d
    train, held_train = keep_out(data.train, held_q, held_d)
    ev, held_eval = keep_out(data.eval, held_q, held_d)
    keys = embeddings.sense_keys(cfg.equivalents_from) if cfg.equivalents_from else {}
    split_info: dict = {}
    if cfg.eval_split_by == "document" and data.counts.get("eval_split") != "auto":
        training.warn(f"eval_split_by: document applies to the automatic split only (this run's: {data.counts.get('eval_split')})")
    elif cfg.eval_split_by == "document":
        train, ev, dropped = split_by_document(train + ev, cfg.eval_fraction, cfg.seed, keys)
        split_info = {"eval_split_by": "document", "eval_documents": len({keys.get(r["positive"], r["positive"]) for r in ev}),
                      "train_dropped_validation_requests": dropped}
        training.log(f"validation: {len(ev)} triplets of {split_info['eval_documents']} held-out tools; "
                     f"{dropped} training triplets with a validation request dropped")

    set_seed(cfg.seed)
    model = embeddings.load(cfg.model, device=precision.device, trust_remote_code=cfg.trust_remote_code,
                            max_length=cfg.max_length)
    tokenizer = model.tokenizer
    train, train_counts = fit_length(train, tokenizer, cfg.max_length, cfg.truncation)
    ev, eval_counts = fit_length(ev, tokenizer, cfg.max_length, cfg.truncation)
    if len(train) < 2:
        raise RunError(f"{len(train)} training triplets left ({held_train} held out by --holdout, "
                       f"{train_counts['dropped_too_long']} longer than max_length {cfg.max_length})",
                       hint="add data, check --holdout, or raise max_length")
    has_eval = bool(ev)
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train)} train / {len(ev)} eval triplets"
                 + (f" ({held_train + held_eval} held out by --holdout)" if cfg.holdout else "")
                 + f"; {precision.reason}" + (f"; resuming from {ctx.resume_from}" if ctx.resume_from else ""))

    documents = sorted({r[k] for r in [*train, *ev] for k in ("positive", "negative")})
    rows = [{"anchor": r["anchor"], "positive": r["positive"], "negative": r["negative"]} for r in train]
    mined = 0
    if cfg.mine_negatives > 0:  # with the base model, before any adapter: the same negatives on every re-run
        extra = mine(model, train, documents, cfg.mine_negatives, cfg.batch_size)
        mined = len(extra)
        rows = (rows if cfg.use_negatives else []) + extra
    elif not cfg.use_negatives:
        rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in rows]
    method = "full"
    if cfg.method == "lora":
        method = embeddings.attach_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                        target_modules=cfg.lora_target_modules, fallback=cfg.lora_fallback)
    params = training.count_parameters(model)

    sampler: Any = BatchSamplers.NO_DUPLICATES if cfg.loss != "triplet" else BatchSamplers.BATCH_SAMPLER
    with_sense = 0
    if cfg.equivalents_from:
        with_sense = sum(1 for d in documents if d in keys)
        if not with_sense:
            raise ConfigError(f"equivalents_from: none of the {len(documents)} documents is a tool of "
                              f"{', '.join(cfg.equivalents_from)} with a sense",
                              hint="pass the catalog the triplets' tools come from (`generate tools --synthesize` writes senses)")
        sampler = embeddings.SenseBatches(keys)
        training.log(f"{with_sense} of {len(documents)} documents have a sense in {', '.join(cfg.equivalents_from)}: "
                     "same-sense tools never share a batch")
    if cfg.loss != "triplet" and len(documents) < 2 * cfg.batch_size:
        training.warn(f"only {len(documents)} distinct documents for batches of {cfg.batch_size}: no text may appear twice "
                      f"in a batch, so a batch holds at most ~{max(1, len(documents) // 2)} triplets and MNRL sees "
                      "fewer in-batch negatives than batch_size suggests (see rows_per_batch in the summary); "
                      "add documents or lower batch_size")
    evaluator = None
    kw = training.trainer_arguments(
        run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
        max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, eval_delay=cfg.eval_delay, gradient_checkpointing=bool(cfg.gradient_checkpointing))
    metric_key = "eval_loss"
    if has_eval:
        queries, corpus, relevant = ir_task(train, ev, keys)
        evaluator = InformationRetrievalEvaluator(
            queries=queries, corpus=corpus, relevant_docs=relevant, name="val", batch_size=cfg.batch_size,
            mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 10], precision_recall_at_k=[1, 10], map_at_k=[10],
            show_progress_bar=False, write_csv=False)
        if cfg.eval_metric != "loss":
            metric_key = f"eval_val_{model.similarity_fn_name or 'cosine'}_{METRIC_KEYS[cfg.eval_metric]}"
            kw.update(metric_for_best_model=metric_key, greater_is_better=True)
    args = SentenceTransformerTrainingArguments(
        **kw, batch_sampler=sampler,
        **({"deepspeed": cfg.deepspeed} if cfg.deepspeed else {}))
    early = training.early_stopping_callback(cfg.patience) if has_eval and cfg.patience > 0 else None
    eval_rows = [{"anchor": r["anchor"], "positive": r["positive"], "negative": r["negative"]} for r in ev]
    if not cfg.use_negatives and cfg.mine_negatives <= 0:
        eval_rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in eval_rows]
    trainer_cls = embeddings.make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          eval_dataset=Dataset.from_list(eval_rows) if has_eval else None,
                          loss=make_loss(cfg, model), evaluator=evaluator, callbacks=ctx.callbacks(early))
    info = {"method": method, "loss": cfg.loss, "eval_metric": cfg.eval_metric,
            "batch": {"records_per_step": cfg.batch_size * cfg.gradient_accumulation_steps * args.world_size,
                      "batch_sampler": str(args.batch_sampler)},
            "params": params,
            "data": {**data.counts, **split_info, "held_out": held_train + held_eval, "train_triplets": len(train),
                     "train_rows": len(rows), "mined_negatives": mined, "eval_triplets": len(ev),
                     "documents": len(documents), "documents_with_sense": with_sense, "train_fit": train_counts, "eval_fit": eval_counts}}

    def finish(trainer: Any, interrupted: Any) -> dict:
        out: dict = {"tokens_this_run": trainer.tokens_this_run}
        if trainer.batches_this_run:  # what the batches held, per forward (this run; a resumed run counts its part)
            out["rows_per_batch"] = round(trainer.rows_this_run / trainer.batches_this_run, 1)
        if not interrupted:
            final = run_dir / "final"
            if training.is_main_process() and final.is_dir():
                from trajtune.embeddings import text_digest

                embeddings.write_manifest(final, base_model=cfg.model, queries=len({r["anchor"] for r in train}),
                                          documents={text_digest(t) for t in documents})
                (final / "training_args.bin").unlink(missing_ok=True)
            if has_eval:  # the restored best model, as final/ holds it (the evaluator alone: no callbacks fire)
                scores = trainer.evaluator(trainer.model)
                prefix = f"val_{model.similarity_fn_name or 'cosine'}_"
                out["eval_retrieval"] = {k[len(prefix):]: round(float(v), 4) for k, v in scores.items()
                                         if k.startswith(prefix) and k[len(prefix):] in
                                         ("recall@1", "recall@10", "mrr@10", "ndcg@10", "map@10")}
                best = trainer.state.best_model_checkpoint
                step = int(best.rsplit("-", 1)[1]) if best else None
                losses = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == step]
                if losses:
                    out["eval_loss"] = float(losses[-1])  # of the best checkpoint
        return out

    return training.Setup(trainer=trainer, tokenizer=tokenizer, has_eval=has_eval, early=early, info=info, finish=finish)


_BASE = training.stage(
    NAME, Config, "triplet", setup,
    help="Fine-tune an embedding model (sentence-transformers; default all-MiniLM-L6-v2) on triplet records: "
         "MultipleNegativesRankingLoss with in-batch negatives and each record's hard negative (no-duplicates "
         "batches), its cached form for large batches, or TripletLoss; full or LoRA; optional hard negatives mined "
         "with the base model. Data is validated and review-gated first; >100 records without --eval-data are split "
         "90/10 by anchor, and the held-out anchors are ranked against every document of the data (MRR@10 by "
         "default picks the best checkpoint and drives early stopping). --holdout keeps an evaluation's requests "
         "and documents out of training. Writes RUN_DIR/config.yaml, checkpoint-N/, final/ (a sentence-transformers "
         "folder, a LoRA merged in), tensorboard/ and training_summary.json; re-running resumes; Ctrl-C/SIGTERM "
         "saves a checkpoint first (exit 130). Evaluate with `trajtune evaluate TASKS --corpus CATALOG --model RUN/final --baseline base`.",
    example="trajtune train-embed data/triplets.jsonl --holdout data/tasks.jsonl -o runs/embed --max-steps 200 --batch-size 64",
)


def run(cfg: Config) -> dict:
    """The skeleton's run, with the summary naming the retrieval metric that chose the best checkpoint."""
    summary = _BASE.run(cfg)
    if summary.get("skipped"):
        return summary
    code = summary.pop("exit_code", 0)
    if cfg.eval_metric != "loss":
        best = summary.pop("best_eval_loss", None)
        summary["best_eval_metric"] = {"name": cfg.eval_metric, "value": best}
        summary["stop_reason"] = summary["stop_reason"].replace("eval loss", f"validation {cfg.eval_metric}")
    training.write_summary(summary["run_dir"], summary)
    return {**summary, "exit_code": code}


def render(summary: dict, cfg: Any) -> None:
    training.render_summary(summary, cfg)
    r = summary.get("eval_retrieval")
    if r and not summary.get("skipped") and training.is_main_process():
        training.log("validation retrieval (best checkpoint): " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))


STAGE = dataclasses.replace(_BASE, run=run, render=render)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
