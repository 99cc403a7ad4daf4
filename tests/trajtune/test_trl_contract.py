"""The parts of trl that train-dpo depends on beyond its public API, pinned and checked.

trajtune.trainers overrides three private DPOTrainer methods, builds trl's FusedCausalLMOutput in
its own LM head and reads DPOTrainer._total_train_tokens. setup.cfg pins trl to the version these
were written against; this test fails loudly, naming what to re-check, if an upgrade changes any
of them (a new trl minor release would otherwise break train-dpo silently).
"""
import dataclasses
import hashlib
import inspect

import trl
from trl import DPOTrainer
from trl.trainer.utils import FusedCausalLMOutput

TESTED = "1.16.0"
# sha256 (first 16 hex) of the source of each overridden private method in the tested trl
OVERRIDDEN = {
    "_prepare_dataset": "35e349e8e8266df4",
    "_precompute_ref_logps": "f2c098c7da6ca701",
    "_set_signature_columns_if_needed": "71225a628baed4cb",
}


def test_trl_is_the_tested_version_and_setup_cfg_pins_it(repo_root):
    assert trl.__version__ == TESTED, f"trl {trl.__version__} installed; trajtune.trainers was checked against {TESTED}"
    assert f"trl=={TESTED}" in (repo_root / "setup.cfg").read_text()


def test_the_private_methods_train_dpo_overrides_are_unchanged():
    changed = {}
    for name, digest in OVERRIDDEN.items():
        src = inspect.getsource(getattr(DPOTrainer, name))
        got = hashlib.sha256(src.encode()).hexdigest()[:16]
        if got != digest:
            changed[name] = got
    assert not changed, (f"trl changed DPOTrainer.{', '.join(changed)}: re-read them against "
                         "trajtune/trainers.py PretokenizedDPOTrainer, then update OVERRIDDEN")


def test_the_fused_output_and_token_count_train_dpo_uses_still_exist():
    fields = {f.name for f in dataclasses.fields(FusedCausalLMOutput)}
    assert {"loss", "log_probs", "entropy", "mean_logits", "is_top1", "label_mask"} <= fields
    src = inspect.getsource(DPOTrainer)
    assert "_total_train_tokens" in src and "fused_lm_head" in src
    # the head the override installs is called with fused_lm_head=True by trl's loss
    from trajtune.trainers import add_completion_only_head

    assert "fused_lm_head" in inspect.getsource(add_completion_only_head)
