# trajtune: `make demo` runs the whole pipeline on the default model; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TT      := $(BIN)/trajtune

.PHONY: install test demo clean-demo

install: $(VENV)/.installed

# torch is pinned first so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=64" wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/python -m pytest -q tests


# ---------------------------------------------------------------------------------------------
# The main job: the whole pipeline on the default model. Every step is a target whose inputs and
# outputs are files, so an interrupted `make demo` picks up at the stage where it stopped (and an
# interrupted training step resumes from its newest checkpoint). Sizes: configs/demo.mk.
include configs/demo.mk
DEMO  ?= runs/demo
D     := $(DEMO)
TIMES := $(D)/stage_times.tsv

# `$(STAGE) NAME 'COMMAND'`: run one stage, record its wall time and peak memory (RSS), and say
# which stage failed (scripts/stage.py)
STAGE = @$(BIN)/python -m trajtune.scripts.stage $(TIMES)

# every stage registers its run (manifest.json beside its output) in the demo's own registry
export TRAJTUNE_REGISTRY ?= $(abspath $(D))/registry.sqlite

.DELETE_ON_ERROR:
.PHONY: demo demo-report demo-clean

demo: install $(D)/eval/report.json demo-report

# the before/after table (evaluate's report.md), then each stage's wall time and peak memory
demo-report:
	@echo; cat $(D)/eval/report.md; echo; echo "The same two models from the registry (trajtune runs compare):"; \
	$(TT) runs compare $(D)/eval:baseline $(D)/eval:tuned && \
	echo; echo "Stage wall times and peak memory (latest run of each):"; \
	$(BIN)/python -m trajtune.scripts.stage $(TIMES) --report

$(D)/model.txt: | install
	$(STAGE) fetch-model '$(BIN)/python -m trajtune.models $(MODEL) > $@.tmp && mv $@.tmp $@'

# the shipped catalog (with its templates) + synthetic APIs (phrased by the grammar); whole tool
# families of the synthetic set are held out: training never sees them, the eval tasks use them
CATALOGS = --catalog data/tools --catalog $(D)/data/synth_tools.json
GEN      = $(CATALOGS) --template-share $(TEMPLATE_SHARE) --shapes $(SHAPES) --topic-share $(TOPIC_SHARE) --near-miss-share $(NEAR_MISS_SHARE)

$(D)/data/synth_tools.json: $(D)/model.txt
	$(STAGE) generate-tools '$(TT) generate tools --synthesize $(SYNTH_TOOLS) --seed $(SEED) -o $@'

$(D)/data/train_all.jsonl: $(D)/data/synth_tools.json
	$(STAGE) generate-trajectories '$(TT) generate trajectories $(GEN) --count $(TRAIN_COUNT) --no-call-share $(NOCALL_SHARE) --followup-share $(FOLLOWUP_SHARE) --seed $(SEED) -o $@.part && $(TT) review $@.part --approve-all && mv $@.part $@'

$(D)/data/prefs.jsonl: $(D)/data/synth_tools.json
	$(STAGE) generate-preferences '$(TT) generate preferences $(GEN) --count $(PREF_COUNT) --seed $(SEED) -o $@.part && $(TT) review $@.part --approve-all && mv $@.part $@'

$(D)/data/tasks.jsonl: $(D)/data/synth_tools.json
	$(STAGE) generate-tasks '$(TT) generate tasks --split eval $(CATALOGS) --template-share $(TASK_TEMPLATE_SHARE) --topic-share $(TOPIC_SHARE) --count $(TASK_COUNT) --seed $(SEED) -o $@.part && mv $@.part $@'

# the demo stops on invalid data, as CI would; --against checks eval prompts never leak into training
$(D)/validated.ok: $(D)/data/train_all.jsonl $(D)/data/prefs.jsonl $(D)/data/tasks.jsonl
	$(STAGE) validate '$(TT) validate $^ --strict --max-errors 20 && $(TT) validate $(D)/data/train_all.jsonl $(D)/data/prefs.jsonl --against $(D)/data/tasks.jsonl --max-errors 20 && touch $@'

$(D)/splits/train.jsonl: $(D)/validated.ok
	$(STAGE) split '$(TT) split $(D)/data/train_all.jsonl -o $(D)/splits --ratios $(SPLIT_RATIOS) --seed $(SEED) --stratify-by metadata.category'

$(D)/sft/final/adapter_config.json: $(D)/splits/train.jsonl
	$(STAGE) train-sft '$(TT) train-sft $(D)/splits/train.jsonl --eval-data $(D)/splits/val.jsonl --config $(SFT_CONFIG) --model $(MODEL) --max-steps $(SFT_STEPS) --set eval_delay=$(SFT_EVAL_DELAY) --set max_eval_records=$(SFT_EVAL_RECORDS) $(foreach kv,$(SFT_SET),--set $(kv)) -o $(D)/sft'

$(D)/dpo/final/adapter_config.json: $(D)/sft/final/adapter_config.json $(D)/data/prefs.jsonl
	$(STAGE) train-dpo '$(TT) train-dpo $(D)/data/prefs.jsonl --config $(DPO_CONFIG) --model $(MODEL) --adapter $(D)/sft/final --max-steps $(DPO_STEPS) -o $(D)/dpo'

$(D)/merged/config.json: $(D)/dpo/final/adapter_config.json
	$(STAGE) merge-lora '$(TT) merge-lora $(D)/dpo/final --model $(MODEL) -o $(D)/merged --force'

$(D)/eval/report.json: $(D)/merged/config.json $(D)/data/tasks.jsonl
	$(STAGE) evaluate '$(TT) evaluate $(D)/data/tasks.jsonl --model $(D)/merged --baseline $(MODEL) --max-new-tokens $(EVAL_MAX_NEW) -o $(D)/eval'

demo-clean:
	rm -rf $(D)


# ---------------------------------------------------------------------------------------------
# BFCL: base vs the demo's tuned model on tasks nobody wrote for it (Berkeley Function Calling
# Leaderboard data, read from the bfcl-eval wheel: fetched once with pip download --no-deps, never
# installed), scored the way BFCL's AST checker scores. BFCL is evaluation data only.
# `make bfcl` (all tasks of each category) or `make bfcl BFCL_LIMIT=40` (the first 40 of each).
BFCL_CATEGORIES ?= simple_python multiple parallel parallel_multiple irrelevance
BFCL_LIMIT      ?=
# new tokens per task; evaluate raises it where a task's expected calls need more (fit_expected)
BFCL_MAX_NEW    ?= 128
BF              := $(D)/bfcl$(if $(BFCL_LIMIT),-$(BFCL_LIMIT))

.PHONY: bfcl
bfcl: install $(BF)/eval/report.json
	@echo; sed -n '/^| metric/,/^| ready for RL/p;/^## Pass rate by category/,/mean over categories/p' $(BF)/eval/report.md; \
	echo; echo "full report: $(BF)/eval/report.md"

$(BF)/tasks.jsonl: $(D)/model.txt
	$(STAGE) bfcl-convert 'mkdir -p $(BF) && for c in $(BFCL_CATEGORIES); do $(TT) convert --from bfcl --to task $$c -o $(BF)/$$c.jsonl $(if $(BFCL_LIMIT),--max-records $(BFCL_LIMIT)) || exit 1; done && cat $(foreach c,$(BFCL_CATEGORIES),$(BF)/$(c).jsonl) > $@.part && mv $@.part $@'

# BFCL stays out of training: the demo's training trajectories, pairs and eval tasks share no prompt
# with the BFCL tasks about to be evaluated (validate --against exits 1 naming any that do)
$(BF)/no-leak.ok: $(BF)/tasks.jsonl $(D)/data/train_all.jsonl $(D)/data/prefs.jsonl $(D)/data/tasks.jsonl
	$(STAGE) bfcl-no-leak '$(TT) validate $(D)/data/train_all.jsonl $(D)/data/prefs.jsonl $(D)/data/tasks.jsonl --against $(BF)/tasks.jsonl --max-errors 20 && touch $@'

$(BF)/eval/report.json: $(D)/merged/config.json $(BF)/tasks.jsonl | $(BF)/no-leak.ok
	$(STAGE) bfcl-evaluate '$(TT) evaluate $(BF)/tasks.jsonl --model $(D)/merged --baseline $(MODEL) --match bfcl --max-new-tokens $(BFCL_MAX_NEW) -o $(BF)/eval'


# ---------------------------------------------------------------------------------------------
# RL on top of the demo (run `make demo` first): train-grpo continues the demo's SFT adapter on task
# records disjoint from the demo's held-out eval tasks (training tools and phrasings, another seed;
# validate --against refuses any prompt that leaks into them), rewarded by evaluate's scorer; then
# evaluate compares it with the SFT model on the demo's held-out tasks (paired McNemar test).
# `make demo-rl` or `make demo-rl RL_STEPS=60`; `make demo-rl-bfcl` adds BFCL (after `make bfcl`'s tasks).
RL_CONFIG     ?= configs/train_grpo/smollm2-135m.yaml
RL_STEPS      ?= 30
RL_TASK_COUNT ?= 200
RL_SEED       ?= 1
# what the RL tasks ask for: the shares of the task shapes for the synthetic tools (empty: generate's
# defaults, irrelevance 0.14 and missing_info 0.05 among them) and the share of the template tasks
# whose right answer is no call; the held-out tasks hold ~20% no-call tasks
RL_SHAPES       ?=
# extra train-grpo settings, e.g. RL_SET="learning_rate=2e-4 beta=0.04" (each becomes --set KEY=VALUE)
RL_SET          ?=
RL_NOCALL_SHARE ?= 0.15
RL            := $(D)/rl

.PHONY: demo-rl demo-rl-bfcl
demo-rl: install $(RL)/eval/report.json
	@echo; cat $(RL)/eval/report.md; echo; $(TT) runs compare $(RL)/eval:baseline $(RL)/eval:tuned

$(RL)/tasks.jsonl: $(D)/data/tasks.jsonl $(D)/data/synth_tools.json
	$(STAGE) rl-tasks 'mkdir -p $(RL) && $(TT) generate tasks --split train $(CATALOGS) --template-share $(TASK_TEMPLATE_SHARE) --count $(RL_TASK_COUNT) --no-call-share $(RL_NOCALL_SHARE) $(if $(RL_SHAPES),--shapes $(RL_SHAPES)) --seed $(RL_SEED) -o $@.part && $(TT) review $@.part --approve-all && $(TT) validate $@.part --against $(D)/data/tasks.jsonl --max-errors 20 && mv $@.part $@'

$(RL)/grpo/final/adapter_config.json: $(RL)/tasks.jsonl $(D)/sft/final/adapter_config.json
	$(STAGE) train-grpo '$(TT) train-grpo $(RL)/tasks.jsonl --config $(RL_CONFIG) --model $(MODEL) --adapter $(D)/sft/final --max-steps $(RL_STEPS) $(foreach kv,$(RL_SET),--set $(kv)) -o $(RL)/grpo'

$(RL)/eval/report.json: $(RL)/grpo/final/adapter_config.json $(D)/data/tasks.jsonl
	$(STAGE) rl-evaluate '$(TT) evaluate $(D)/data/tasks.jsonl --model $(MODEL) --adapter $(RL)/grpo/final --baseline $(D)/sft/final --max-new-tokens $(EVAL_MAX_NEW) -o $(RL)/eval'

demo-rl-bfcl: $(RL)/grpo/final/adapter_config.json $(BF)/tasks.jsonl
	$(STAGE) rl-bfcl-evaluate '$(TT) evaluate $(BF)/tasks.jsonl --model $(MODEL) --adapter $(RL)/grpo/final --baseline $(D)/sft/final --match bfcl --max-new-tokens $(BFCL_MAX_NEW) -o $(RL)/bfcl-eval'
	@sed -n '/^| metric/,/^| ready for RL/p' $(RL)/bfcl-eval/report.md
