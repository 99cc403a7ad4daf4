"""train-grpo: reinforcement learning (GRPO) on task records, rewarded by THE scorer, resumable.

Runs as ``trajtune train-grpo TASKS.jsonl --config configs/train_grpo/smollm2-135m.yaml -o RUN_DIR`` or,
with the same command line, ``python -m trajtune.scripts.train_grpo ...``. The stage function is
:func:`run`; the run skeleton is :func:`trajtune.training.run_training` (shared with train-sft and
train-dpo); rewards, rollouts and the held-out pass rate live in :mod:`trajtune.grpo`.

What it does, top to bottom:
  1) run folder and resume point; read + validate the task files (a bad file fails before any
     model is loaded), review gate, minimum tasks, held-out split by prompt (trajtune/training.py);
  2) render every task's prompt with trajtune.chat exactly as evaluate does (a chat template that
     cannot render the tools stops here);
  3) load the policy: base model + new LoRA, an SFT/DPO adapter to keep training (--adapter), a
     merged model, or full fine-tuning (as train-dpo loads it);
  4) probe: sample num_generations completions for a few tasks and stop when no group's rewards
     differ (GRPO would learn nothing);
  5) train with trl's GRPOTrainer: rewards from trajtune.scoring (partial credit, optional weighted
     terms), rollouts from the slot engine (each group's prompt prefilled once) through trl's
     rollout_func, held-out pass rate every eval_steps (early stopping, best checkpoint);
  6) write final/ and training_summary.json (reward mean/std per term, all-equal groups, KL,
     completion length, held-out pass rate, rollout tokens/s).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError
from trajtune.training import redefault

NAME = "train-grpo"


@dataclass
class Config(training.TrainConfig):
    """train-grpo's options: the shared TrainConfig, GRPO's own defaults, and what only GRPO has."""

    min_records: int = redefault("min_records", 16)
    max_length: int = redefault("max_length", 1024)  # prompt + completion tokens
    lora_dropout: float = redefault("lora_dropout", 0.0)  # rollouts run without dropout; the loss should see the same policy
    batch_size: int = redefault("batch_size", 8)
    learning_rate: float = redefault("learning_rate", 5e-5)
    gradient_checkpointing: Any = redefault("gradient_checkpointing", False)
    patience: int = redefault("patience", 3)
    attn_implementation: Literal["auto", "eager", "sdpa"] = redefault("attn_implementation", "sdpa")  # the shared-prefill rollout engine needs SDPA
    adapter: Optional[str] = field(None, help="an SFT/DPO LoRA adapter folder to keep training; its base is --model")
    group_min_reward: Optional[float] = field(None, help="group records (a prompt with scored responses) become tasks whose "
                                                         "expected reply is the best response's first turn; skip a group "
                                                         "whose best reward is below this (none: any group whose rewards differ)")
    num_generations: int = field(4, help="completions sampled per prompt (a group); must divide batch_size")
    max_completion_length: int = field(128, help="new tokens per completion; a reply cut here is scored as truncated")
    temperature: float = field(1.0, help="sampling temperature of the rollouts")
    top_p: float = field(1.0, help="nucleus sampling of the rollouts (1.0 = off)")
    beta: float = field(0.0, help="KL coefficient to the reference (the starting policy); 0 = no reference pass (trl's default)")
    loss_type: str = field("dapo", choices=("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
                           help="trl's GRPO loss aggregation")
    scale_rewards: Literal["group", "batch", "none"] = field("group", help="advantage scaling: by the group's reward std, the batch's, or none")
    partial_credit: bool = field(True, help="task_reward is the scorer's reward (partial credit up to 0.9 for a failed "
                                            "call: valid JSON, right names, right arguments); false: 1 for a pass, 0 otherwise")
    format_weight: float = field(0.0, help="weight of format_reward (1 when every <tool_call> parses and the turn ends, else 0); 0 = off")
    length_weight: float = field(0.0, help="weight of length_penalty (-tokens / max_completion_length); 0 = off")
    match: Literal["auto", "trajtune", "bfcl"] = field("auto", help="scoring rules, as evaluate's --match (auto: per task, bfcl where its metadata.scoring says so)")
    rollout: Literal["auto", "shared", "trl", "vllm"] = field(
        "auto", help="shared: the slot engine, each group's prompt prefilled once (trl's rollout_func); trl: trl's "
                     "model.generate; vllm: trl's vLLM colocate (CUDA + vllm); auto: vllm where available, else shared "
                     "where the model supports it, else trl")
    share_prompt: bool = field(True, help="in the loss's forward, run each distinct prompt of a batch once for its group's "
                                          "completions (KV cache repeated) and project only completion positions through the "
                                          "LM head; false: trl's head over every position of every row")
    probe_tasks: int = field(4, help="tasks sampled before training to check the rewards vary within a group (0 = no probe)")
    keep_start: bool = field(True, help="the starting model counts as a checkpoint: when no checkpoint beats its held-out "
                                        "pass rate, final/ holds the starting weights (the --adapter as given, or a LoRA "
                                        "that changes nothing) instead of the best of a run that made it worse; "
                                        "false: final/ holds the best checkpoint regardless (LoRA only)")

    def check(self) -> None:
        super().check()
        if self.num_generations < 2:
            raise ConfigError(f"num_generations must be >= 2 (a group needs two completions to compare), got {self.num_generations}")
        if self.batch_size % self.num_generations:
            raise ConfigError(f"num_generations ({self.num_generations}) must divide batch_size ({self.batch_size}): "
                              "a step's completions are whole groups",
                              hint=f"e.g. --batch-size {self.num_generations * max(1, self.batch_size // self.num_generations)}")
        if not 0 < self.max_completion_length < self.max_length:
            raise ConfigError(f"max_completion_length must be between 1 and max_length - 1 ({self.max_length - 1})")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature must be > 0 and top_p in (0, 1]")
        if self.beta < 0 or self.probe_tasks < 0:
            raise ConfigError("beta and probe_tasks must be >= 0")
        if self.adapter and self.method != "lora":
            raise ConfigError(f"--adapter continues a LoRA adapter; it cannot be combined with method: {self.method}")
        if self.gradient_checkpointing == "auto":
            raise ConfigError("train-grpo: gradient_checkpointing is true or false (auto sizes SFT micro-batches only)")


# ------------------------------------------------------------------ rollouts

def choose_rollout(cfg: Config, model: Any, precision: "training.Precision") -> tuple[str, str]:
    """(engine, why): vllm, shared or trl."""
    import importlib.util

    from trajtune.generation import supported
    from trajtune.grpo import generation_model

    has_vllm = precision.device == "cuda" and importlib.util.find_spec("vllm") is not None
    if cfg.rollout == "vllm" and not has_vllm:
        raise ConfigError("rollout: vllm needs a CUDA GPU and vllm installed", hint="use rollout: shared or trl")
    ok, why = supported(generation_model(model))
    if cfg.rollout == "shared" and not ok:
        raise ConfigError(f"rollout: shared does not support this model: {why}", hint="use --set rollout=trl")
    if cfg.rollout != "auto":
        return cfg.rollout, "as configured"
    if has_vllm:
        return "vllm", "CUDA and vllm available"
    if ok:
        return "shared", "the slot engine supports this model"
    training.warn(f"rollouts through trl's model.generate: the slot engine does not support this model ({why})")
    return "trl", why


def probe(cfg: Config, engine: str, model: Any, tokenizer: Any, rows: list[dict], funcs: list, weights: list, roll: Any,
          stop_ids: list[int]) -> dict:
    """Sample num_generations completions for probe_tasks tasks drawn from the training tasks (seeded);
    RunError when every group's task rewards are all equal: the model passes or fails every sample, so
    GRPO could learn nothing about the tasks (a shaping term that varies, e.g. the length penalty, would
    still give it a gradient, towards shorter or well-formed replies only)."""
    import random

    import torch

    from trajtune.grpo import generation_model, term_rewards

    sample = random.Random(cfg.seed).sample(rows, min(cfg.probe_tasks, len(rows)))
    ids = [roll.ids(r["prompt"]) for r in sample]
    G = cfg.num_generations
    if engine == "shared":
        completions = [r.ids for r in roll.sample(model, ids, G)]
    else:  # model.generate, sampling the same way
        gen = generation_model(model)
        was_training = gen.training
        gen.eval()
        completions = []
        with torch.no_grad():
            for p in ids:
                out = gen.generate(torch.tensor([p], device=gen.device), do_sample=True, temperature=cfg.temperature,
                                   top_p=cfg.top_p, top_k=0, num_return_sequences=G, max_new_tokens=cfg.max_completion_length,
                                   eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
                completions.extend(seq[len(p):].tolist() for seq in out)
        gen.train(was_training)
    tasks = [r["task"] for r in sample for _ in range(G)]
    terms = term_rewards(funcs, completions, tasks)
    return probe_verdict(terms, {f.__name__: w for f, w in zip(funcs, weights)}, G)


def probe_verdict(terms: dict[str, list[float]], weights: dict[str, float], group: int) -> dict:
    """The probe's counts from each term's rewards (groups of ``group`` completions in a row); RunError
    when no group's task rewards differ, whether or not the weighted total does."""
    def varied(values: list[float]) -> int:
        return sum(1 for k in range(0, len(values), group) if max(values[k: k + group]) - min(values[k: k + group]) > 1e-9)

    task = terms["task_reward"]
    totals = [sum(weights[name] * terms[name][k] for name in terms) for k in range(len(task))]
    mean = sum(task) / max(len(task), 1)
    result = {"tasks": len(task) // group, "completions": len(task), "groups_with_variance": varied(task),
              "groups_with_total_variance": varied(totals), "mean_reward": round(mean, 6)}
    if result["groups_with_variance"] == 0:
        raise RunError(
            f"no reward variance on a first probe: {result['tasks']} tasks x {group} sampled completions, every group's "
            f"task rewards are all equal (mean task reward {mean:.3f}); GRPO would learn nothing about the tasks"
            + (" (the weighted shaping terms vary, but they only reward the form of a reply)" if result["groups_with_total_variance"] else ""),
            hint="the model passes or fails every sample: start from an SFT adapter (--adapter), use tasks nearer its "
                 "level, raise temperature or probe_tasks, or --set probe_tasks=0 to train anyway")
    return result


# ------------------------------------------------------------------ the stage

START_EVAL = "start_eval.json"


def held_out_start(run_dir: Path, resume_from: Any, model: Any, tokenizer: Any, tasks: list, stop_ids: list[int],
                   cfg: Config) -> dict:
    """The held-out pass rate of the model the run starts from (base or --adapter), measured once on a
    fresh run and kept in RUN_DIR/start_eval.json, so a resumed run compares with the same figure."""
    from trajtune import grpo
    from trajtune.jsonl import write_json

    path = Path(run_dir) / START_EVAL
    if resume_from is not None and path.is_file():
        import json

        return json.loads(path.read_text("utf-8"))
    got = grpo.held_out(model, tokenizer, tasks, stop_ids, cfg.max_completion_length, cfg.match)
    kinds = ", ".join(f"{k} {v['pass_rate']:.0%} of {v['tasks']}" for k, v in got.get("by_kind", {}).items())
    training.log(f"held-out pass rate before training: {got['pass_rate']:.1%} (mean reward {got['reward']:.3f}, "
                 f"{got['tasks']} tasks: {kinds}): the checkpoints must beat it")
    write_json(path, got)
    return got


def setup(ctx: training.RunContext) -> training.Setup:
    """Render the task prompts, load the policy, probe the rewards and build the GRPOTrainer."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import GRPOConfig

    from trajtune import grpo
    from trajtune.generation import stop_token_ids
    from trajtune.models import resolve_model
    from trajtune.scripts.train_dpo import check_sources, load_policy

    cfg, data, precision, run_dir = ctx.cfg, ctx.data, ctx.precision, ctx.run_dir
    model_path = resolve_model(cfg.model)
    check_sources(cfg, model_path)
    tok_path = cfg.adapter if cfg.adapter and (Path(cfg.adapter) / "tokenizer_config.json").is_file() else model_path
    tokenizer = training.load_tokenizer(tok_path, cfg.trust_remote_code)
    # 1) group records become tasks (the best response's first turn is the expected reply); prompts
    #    rendered as evaluate renders them
    from_groups: dict = {}
    train_tasks = grpo.tasks_from_records(data.train, cfg.group_min_reward, from_groups)
    eval_tasks_in = grpo.tasks_from_records(data.eval, cfg.group_min_reward, from_groups)
    if from_groups["group_records"]:
        training.log(f"group records: {from_groups['group_tasks']} of {from_groups['group_records']} made tasks"
                     + "".join(f"; {n} skipped: {why}" for why, n in from_groups["group_skipped"].items()))
    max_prompt = cfg.max_length - cfg.max_completion_length
    train_rows, train_counts = grpo.encode_tasks(tokenizer, train_tasks, max_prompt)
    eval_rows, eval_counts = grpo.encode_tasks(tokenizer, eval_tasks_in, max_prompt)
    if len(train_rows) < cfg.min_records:
        skipped = sum(from_groups["group_skipped"].values())
        raise RunError(f"{len(train_rows)} training tasks left after rendering ({train_counts['dropped_prompt_too_long']} prompts "
                       f"longer than max_length - max_completion_length = {max_prompt} tokens"
                       + (f"; {skipped} group records could not be made tasks" if skipped else "")
                       + f"); at least {cfg.min_records} are needed", hint="raise max_length, or lower min_records")
    import json

    eval_tasks = [json.loads(r["task"]) for r in eval_rows]
    has_eval = bool(eval_rows)
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train_rows)} train / {len(eval_rows)} held-out tasks; {precision.reason}"
                 + (f"; resuming from {ctx.resume_from}" if ctx.resume_from else ""))

    # 2) the policy, rewards and rollouts
    set_seed(cfg.seed)
    model, method, peft_config = load_policy(cfg, model_path, precision)
    stop_ids = stop_token_ids(tokenizer, model)
    replies = grpo.Replies(tokenizer, stop_ids, cfg.max_completion_length)
    funcs, weights = grpo.reward_functions(replies, match=cfg.match, format_weight=cfg.format_weight,
                                           length_weight=cfg.length_weight, partial_credit=cfg.partial_credit)
    engine, why = choose_rollout(cfg, model, precision)
    roll = grpo.SharedPrefillRollout(tokenizer, stop_ids, cfg.max_completion_length, cfg.temperature, cfg.top_p)
    # 3) probe: refuse a run in which no group's rewards differ (fresh runs only; a resumed run passed it)
    probed = None
    if cfg.probe_tasks and ctx.resume_from is None:
        probed = probe(cfg, engine, model, tokenizer, train_rows, funcs, weights, roll, stop_ids)
        training.log(f"probe: {probed['groups_with_variance']} of {probed['tasks']} groups have reward variance "
                     f"(mean reward {probed['mean_reward']})")
        for k in roll.stats:  # the probe is not training
            roll.stats[k] = 0 if isinstance(roll.stats[k], int) else 0.0

    # 4) the starting model's held-out pass rate: what the run's checkpoints must beat
    start = held_out_start(run_dir, ctx.resume_from, model, tokenizer, eval_tasks, stop_ids, cfg) if has_eval else {}

    # 5) trl's GRPOTrainer
    kw = training.trainer_arguments(
        run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
        max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, eval_delay=cfg.eval_delay, gradient_checkpointing=bool(cfg.gradient_checkpointing))
    if has_eval:  # the best checkpoint and early stopping follow the held-out pass rate
        kw.update(metric_for_best_model="eval_pass_rate", greater_is_better=True)
    args = GRPOConfig(
        **kw, num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta, loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards, reward_weights=weights, log_completions=False,
        # rollouts run in eval mode; an --adapter saved with lora_dropout > 0 would otherwise make the
        # loss's log-probs those of a dropped-out policy (trl's own switch: every nn.Dropout's p -> 0)
        disable_dropout=True,
        use_vllm=engine == "vllm", **({"vllm_mode": "colocate"} if engine == "vllm" else {}),
        **({"deepspeed": cfg.deepspeed} if cfg.deepspeed else {}),
    )
    early = training.early_stopping_callback(cfg.patience) if has_eval and cfg.patience > 0 else None
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in trl 1.16: pinned, tested here

    def held_out(m: Any, tasks: list) -> dict:
        return grpo.held_out(m, tokenizer, tasks, stop_ids, cfg.max_completion_length, cfg.match)

    Trainer = grpo.make_trainer_class()
    try:
        trainer = Trainer(
            model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if has_eval else None, processing_class=tokenizer,
            callbacks=[*ctx.callbacks(early), grpo.progress_callback(training.log)], peft_config=peft_config,
            rollout_func=roll if engine == "shared" else None, held_out_tasks=eval_tasks, held_out_fn=held_out)
    except ValueError as exc:
        raise ConfigError(f"trl refused this setup: {str(exc).splitlines()[0][:300]}") from None
    head = "trl's fused head over every position"
    if cfg.share_prompt and not cfg.deepspeed and engine != "vllm":
        from peft import PeftModel

        from trajtune.trainers import add_grouped_prompt_head

        for m in (trainer.model, trainer.ref_model):
            if m is not None and add_grouped_prompt_head(
                    m.get_base_model() if isinstance(m, PeftModel) else m, temperature=cfg.temperature,
                    cast_lm_head_to_fp32=args.cast_lm_head_to_fp32, outputs=("log_probs", "entropy")):
                head = "shared prompts, completion positions only"
    terms = [f.__name__ for f in funcs]
    info = {"adapter": cfg.adapter, "method": method, "beta": cfg.beta, "loss_type": cfg.loss_type,
            "num_generations": cfg.num_generations, "max_completion_length": cfg.max_completion_length,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "reward_terms": dict(zip(terms, weights)),
            "rollout_engine": engine, "rollout_engine_why": why, "loss_forward": head, "probe": probed,
            "dropout_in_training": max((float(m.p) for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)), default=0.0),
            "params": training.count_parameters(trainer.model),
            "data": {**data.counts, "train_tasks": len(train_rows), "eval_tasks": len(eval_rows),
                     "train_rendered": train_counts, "eval_rendered": eval_counts,
                     **({"from_groups": from_groups} if from_groups["group_records"] else {})}}

    judged: dict = {}  # the best checkpoint against the start, decided before final/ is written

    def before_final(trainer: Any) -> None:
        # the restored best model on the held-out tasks (not through evaluate(): early stopping must not count it)
        best = held_out(trainer.model, eval_tasks) if has_eval else {}
        judged.update(best=best, kept_start=False)
        if not (best and start):
            return
        judged["collapsed"] = grpo.collapsed_kinds(start, best)
        judged["beat"] = best["pass_rate"] > start["pass_rate"]
        if judged["beat"]:
            return
        worse = "no better than" if best["pass_rate"] == start["pass_rate"] else "worse than"
        what = (f"the held-out pass rate never beat the starting model's: the best checkpoint {best['pass_rate']:.1%} "
                f"against {start['pass_rate']:.1%} before training ({len(eval_tasks)} tasks)")
        try:
            why_not = grpo.restore_start(trainer.model, cfg.adapter) if cfg.keep_start else "keep_start is off"
        except Exception as exc:  # e.g. sharded parameters: keep the checkpoint rather than lose the run
            why_not = f"the starting weights could not be put back: {type(exc).__name__}: {str(exc)[:200]}"
        if why_not is None:
            judged["kept_start"] = True
            training.warn(f"{what}; final/ holds the starting weights ({'the --adapter as given' if cfg.adapter else 'a LoRA that changes nothing'}), "
                          "not this run's best checkpoint, which is " + worse + " them (--set keep_start=false to keep the checkpoint)")
        else:
            training.warn(f"{what}; final/ holds this run's best checkpoint, which is {worse} the model it started from ({why_not})")

    def finish(trainer: Any, interrupted: Any) -> dict:
        best, kept_start = judged.get("best", {}), judged.get("kept_start", False)  # empty when interrupted
        final = start if kept_start else best
        beat, collapsed = judged.get("beat"), judged.get("collapsed")
        for kind in [] if kept_start else collapsed or []:  # final/ is not the collapsed checkpoint when it is the start
            training.warn(f"the held-out '{kind}' tasks went from {start['by_kind'][kind]['pass_rate']:.0%} to 0%: the "
                          "policy may have learned one kind of reply for everything (check the mix of the RL tasks "
                          "against the tasks you will evaluate on)")
        return {**grpo.summarize(trainer.state.log_history, terms, cfg.beta),
                "final_is_start": kept_start,
                "best_checkpoint_eval_pass_rate": best.get("pass_rate"),
                "eval_pass_rate": final.get("pass_rate"), "eval_reward": final.get("reward"),
                "start_eval_pass_rate": start.get("pass_rate"), "start_eval_reward": start.get("reward"),
                "eval_by_kind": final.get("by_kind"), "start_eval_by_kind": start.get("by_kind"),
                "collapsed_kinds": collapsed,
                "beat_start": beat,
                "eval_pass_rate_history": list(trainer.eval_history),
                "rollout": roll.summary() if engine == "shared" else {"engine": engine}}

    return training.Setup(trainer=trainer, tokenizer=tokenizer, has_eval=has_eval, early=early, info=info, finish=finish,
                          before_final=before_final, best_metric="eval_pass_rate")


STAGE = training.stage(
    NAME, Config, ("task", "group"), setup,
    help="Reinforcement learning (GRPO, trl's GRPOTrainer) on task records (prompt, tools, expected), or group records "
         "(a prompt with scored responses, e.g. from interaction logs: each becomes a task whose expected reply is its "
         "best response's first turn, its calls or no call; groups that cannot are skipped and counted): num_generations "
         "completions sampled per prompt, each rewarded by the evaluate scorer's partial credit (plus optional weighted "
         "format and length terms). From the base model (new LoRA), an SFT/DPO adapter (--adapter RUN/final) or a merged "
         "model; prompts rendered exactly as evaluate renders them; each group's prompt prefilled once (the slot engine). "
         "Refuses to start when a first probe shows no reward variance. Held-out pass rate every eval_steps (early "
         "stopping, best checkpoint). Writes RUN_DIR/config.yaml, checkpoint-N/, final/, tensorboard/ and "
         "training_summary.json; re-running resumes; Ctrl-C/SIGTERM saves a checkpoint first (exit 130).",
    example="trajtune train-grpo data/rl_tasks.jsonl --adapter runs/sft/final --config configs/train_grpo/smollm2-135m.yaml -o runs/grpo",
)

run = STAGE.run  # run(cfg) -> summary: the stage as a function

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
