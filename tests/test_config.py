import dataclasses
import re

import pytest
import yaml

from conftest import ROOT
from pipeline.config import Config, ConfigError, load_config


def test_default_yaml_matches_dataclasses_and_documents_every_key():
    text = (ROOT / "configs" / "default.yaml").read_text()
    values = yaml.safe_load(text)
    assert values == Config().to_dict(), "configs/default.yaml and pipeline/config.py disagree"
    for sec, keys in values.items():
        for key in keys:
            line = next(ln for ln in text.splitlines() if re.match(rf"\s+{re.escape(key)}:", ln))
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, f"{sec}.{key} is not documented"


def test_experiment_configs_load():
    for p in (ROOT / "configs").glob("*.yaml"):
        load_config(p)


def test_overrides_are_typed():
    cfg = load_config(None, ["train.epochs=7", "head.type=gru", "train.lr=3e-4", "head.bidirectional=true",
                             "data.extensions=[.mp4]"])
    assert cfg.train.epochs == 7 and cfg.head.type == "gru" and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.head.bidirectional is True and cfg.data.extensions == [".mp4"]
    assert isinstance(load_config(None, ["video.fps=8"]).video.fps, float)


@pytest.mark.parametrize("override, fragment", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("trian.epochs=3", "unknown section 'trian'"),
    ("train.epochs=abc", "'train.epochs' must be an integer"),
    ("head.type=transformer", "'head.type' must be one of"),
    ("head.bidirectional=maybe", "'head.bidirectional' must be true or false"),
    ("train.lr=-1", "'train.lr' must be > 0"),
    ("epochs", "not of the form"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(None, [override])


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("head:\n  hidden: 12\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "head.hidden" in str(e.value) and "hidden_size" in str(e.value) and str(p) in str(e.value)


def test_every_section_is_a_dataclass():
    for f in dataclasses.fields(Config):
        assert dataclasses.is_dataclass(getattr(Config(), f.name))


def test_cache_folder_precedence(tmp_path, monkeypatch):
    """An explicit folder (config file, override, --cache) beats $VAP_CACHE, which beats the default
    and a checkpoint's saved folder."""
    monkeypatch.setenv("VAP_CACHE", str(tmp_path / "env"))
    assert load_config().cache.dir == str(tmp_path / "env")
    assert load_config(None, base={"cache": {"dir": "/saved/at/training"}}).cache.dir == str(tmp_path / "env")
    assert load_config(None, [f"cache.dir={tmp_path / 'explicit'}"]).cache.dir == str(tmp_path / "explicit")
    p = tmp_path / "x.yaml"
    p.write_text(f"cache:\n  dir: {tmp_path / 'file'}\n")
    assert load_config(p).cache.dir == str(tmp_path / "file")
    monkeypatch.delenv("VAP_CACHE")
    assert load_config().cache.dir == Config().cache.dir


def test_cli_cache_flag_beats_the_environment(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main
    from pipeline.synthetic import make_dataset

    data = make_dataset(tmp_path / "d", 1, actions=("wave", "jump"), seed=0)
    monkeypatch.setenv("VAP_CACHE", str(tmp_path / "env"))
    assert main(["extract", "--data", str(data), "--cache", str(tmp_path / "mine"), "--quiet",
                 "backbone.name=tiny_cnn", "backbone.input_size=64", "views.streams=[frame]"]) in (0, None)
    assert len(list((tmp_path / "mine").rglob("*.npz"))) == 2
    assert not (tmp_path / "env").exists()
