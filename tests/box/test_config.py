"""The box config file: every key defaulted, strict, clear messages, round trip, shipped example valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebox.box.config import BoxConfig, load_box_config, parse_box_config, to_toml, with_overrides
from edgebox.errors import ConfigError


def test_defaults_are_complete_and_round_trip(tmp_path: Path) -> None:
    cfg = BoxConfig()
    assert cfg.gateway.url == "" and cfg.dev.websocket is False and cfg.telemetry.otlp_endpoint == ""
    assert cfg.admin.enabled is False and cfg.ble.enabled is True
    path = tmp_path / "box.toml"
    path.write_text(to_toml(cfg))
    assert load_box_config(path) == cfg
    assert cfg.control_socket_path == Path("var/box/control.sock")
    assert cfg.cert_path == Path("var/box/box.crt") and cfg.key_path is None


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_text("")
    assert load_box_config(path) == BoxConfig()


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[cache]\nthreshhold = 0.9\n", "unknown key [cache] 'threshhold'"),
        ("[nosuch]\nx = 1\n", "unknown key 'nosuch'"),
        ("[cache]\nthreshold = 'high'\n", "cache threshold: Expected `float`"),
        ("[cache]\nthreshold = 0.2\n", "cache threshold: Expected `float` >= 0.5"),
        ("[box]\ninvite_ttl_s = 5\n", "box invite_ttl_s"),
        ("[pipeline]\ninjection_flag_threshold = 0.9\ninjection_block_threshold = 0.5\n", "flag_threshold >"),
        ("[gateway]\nurl = 'http://gw'\nca_file = 'ca.pem'\n", "must start with https://"),
        ("[gateway]\nurl = 'https://gw'\n", "ca_file is not"),
        ("[documents]\nchunk_chars = 300\nchunk_overlap_chars = 300\n", "chunk_overlap_chars >= chunk_chars"),
        ("[box\n", "not valid TOML"),
    ],
)
def test_invalid_files_name_the_key(tmp_path: Path, toml: str, fragment: str) -> None:
    path = tmp_path / "box.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_box_config(path)
    assert fragment in str(err.value)
    assert err.value.code == "config_invalid"


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_box_config(tmp_path / "nope.toml")


def test_overrides_are_validated_like_a_file() -> None:
    cfg = with_overrides(BoxConfig(), box={"state_dir": "/tmp/x"}, cache={"ttl_s": 5.0, "enabled": None})
    assert cfg.box.state_dir == "/tmp/x" and cfg.cache.ttl_s == 5.0 and cfg.cache.enabled is True
    with pytest.raises(ConfigError):
        with_overrides(BoxConfig(), cache={"ttl_s": -1})


def test_shipped_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "box.example.toml"
    cfg = load_box_config(example)
    assert cfg.dev.websocket is False and cfg.dev.echo is False and cfg.box.dev_key_files is False
    assert parse_box_config({}) == BoxConfig()
