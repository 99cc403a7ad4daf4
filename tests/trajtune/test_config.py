"""Stage configs: defaults < YAML < flags; unknown keys name the nearest valid key."""
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from trajtune import config
from trajtune.errors import ConfigError


@dataclass
class Cfg:
    learning_rate: float = config.field(2e-4, help="peak learning rate")
    max_steps: int = config.field(10, help="optimizer steps")
    method: Literal["lora", "full"] = config.field("lora", help="how to train")
    target_modules: list[str] = config.field(default_factory=lambda: ["all-linear"], help="LoRA targets")
    api_key: Optional[str] = config.field(None, help="secret")


def test_precedence_default_file_flag(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 1e-3\nmax_steps: 20\n")
    cfg = config.build(Cfg, f, {"max_steps": 5, "method": None})
    assert (cfg.learning_rate, cfg.max_steps, cfg.method) == (1e-3, 5, "lora")


def test_unknown_key_names_nearest(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rte: 1e-3\n")
    with pytest.raises(ConfigError) as exc:
        config.build(Cfg, f)
    assert "unknown config key 'learning_rte'" in str(exc.value)
    assert "did you mean 'learning_rate'" in str(exc.value)
    assert exc.value.exit_code == 2


def test_bad_types_and_literals_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="max_steps must be an integer"):
        config.build(Cfg, None, {"max_steps": "many"})
    with pytest.raises(ConfigError, match="method must be one of lora, full"):
        config.build(Cfg, None, {"method": "qlora2"})
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config.build(Cfg, f)


def test_yaml_is_safe_loaded(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("max_steps: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config.build(Cfg, f)


def test_saved_config_redacts_secrets(tmp_path):
    cfg = config.build(Cfg, None, {"api_key": "sk-secret-123", "target_modules": "q_proj,v_proj"})
    assert cfg.target_modules == ["q_proj", "v_proj"]
    config.save(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "sk-secret-123" not in text and "max_steps: 10" in text


def test_only_secret_keys_are_redacted():
    from trajtune.config import SECRET_KEY

    assert [k for k in ("api_key", "hf_token", "client_secret", "password", "max_tokens", "max_new_tokens",
                        "api_key_env", "tokenizer") if SECRET_KEY.search(k)] == ["api_key", "hf_token", "client_secret", "password"]
