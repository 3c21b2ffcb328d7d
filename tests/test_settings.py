"""Settings: file, then environment, then flags; errors name key, value and origin."""
from __future__ import annotations

import pytest

from opusclip_ui.errors import ConfigError
from opusclip_ui.settings import DEFAULT_CONFIG, Settings, load_settings


def test_defaults_are_safe():
    s = Settings()
    assert s.allow_private_urls is False and s.inject_oom is None and s.debug is False
    assert s.host == "127.0.0.1"
    assert s.outputs == s.data_dir / "outputs"


def test_shipped_config_is_valid():
    s = load_settings(DEFAULT_CONFIG, env={})
    assert s.upload_max_mb == 2048 and s.gpu_concurrency == 1


def test_env_overrides_file_and_flags_override_env(tmp_path):
    cfg = tmp_path / "app.yaml"
    cfg.write_text("upload_max_mb: 100\nlog_level: info\n")
    s = load_settings(cfg, env={"OPUSCLIP_UPLOAD_MAX_MB": "200", "OPUSCLIP_PORT": "9000",
                                "OPUSCLIP_MODEL_ROOTS": "/a:/b"},
                      overrides={"port": 9100, "host": None})
    assert (s.upload_max_mb, s.port, s.log_level) == (200, 9100, "INFO")
    assert [str(p) for p in s.model_roots] == ["/a", "/b"]


@pytest.mark.parametrize("env, key, value, origin", [
    ({"OPUSCLIP_UPLOAD_MAX_MB": "lots"}, "upload_max_mb", "'lots'", "environment"),
    ({"OPUSCLIP_PORT": "70000"}, "port", "'70000'", "environment"),
    ({"OPUSCLIP_LOG_LEVEL": "LOUD"}, "log_level", "'LOUD'", "environment"),
    ({"OPUSCLIP_AUTH": "justauser"}, "auth", "'justauser'", "environment"),
])
def test_bad_values_name_key_value_and_origin(env, key, value, origin):
    with pytest.raises(ConfigError) as info:
        load_settings(DEFAULT_CONFIG, env=env)
    msg = info.value.user_message
    assert f"`{key}`" in msg and value in msg and origin in msg


def test_unknown_key_in_file_is_refused(tmp_path):
    cfg = tmp_path / "app.yaml"
    cfg.write_text("uplod_max_mb: 5\n")
    with pytest.raises(ConfigError, match="Unknown setting `uplod_max_mb`"):
        load_settings(cfg, env={})


@pytest.mark.parametrize("text", ["- a\n- b\n", "!!python/object/apply:os.getcwd []\n"])
def test_file_must_be_a_plain_mapping(tmp_path, text):
    cfg = tmp_path / "app.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError):
        load_settings(cfg, env={})


def test_missing_config_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_password_is_masked_for_display():
    assert Settings(auth="ann:secret").public_dict()["auth"] == "ann:***"
