import dataclasses
import re
import typing

import pytest
import yaml

from pipeline.config import Config, ConfigError, _check_value, choices, default_yaml, load_config, validate

from conftest import ROOT


def test_default_yaml_is_generated_from_the_dataclasses():
    """configs/default.yaml is what `python -m pipeline.config` writes: one source of truth."""
    text = (ROOT / "configs" / "default.yaml").read_text()
    assert text == default_yaml(), "configs/default.yaml is stale: python -m pipeline.config > configs/default.yaml"
    assert yaml.safe_load(text) == Config().to_dict()


def test_every_key_has_a_doc_a_checkable_type_and_a_valid_default():
    cfg = Config()
    for sec in dataclasses.fields(cfg):
        section = getattr(cfg, sec.name)
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            key = f"{sec.name}.{f.name}"
            assert len(f.metadata.get("doc", "")) > 10, f"{key} is not documented"
            default = getattr(section, f.name)
            assert _check_value(key, default, hints[f.name]) == default, key  # the checker knows its type
            if choices(hints[f.name]):
                assert set(default if isinstance(default, list) else [default]) <= set(choices(hints[f.name]))
    validate(cfg)  # the defaults are in range


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
    # ranges (from each key's metadata) and cross-key checks
    ("data.val_fraction=1.0", "'data.val_fraction' must be in [0, 1), got 1.0"),
    ("backbone.grid=5", "'backbone.grid' must be in [1, 4], got 5"),
    ("views.streams=[crop,crop]", "'views.streams' must list at least one"),
    ("views.streams=[crop,depth]", "'views.streams' must be one of"),
    ("train.speed_min=2", "'train.speed_min' <= 'train.speed_max'"),
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


def test_the_next_event_task_has_its_own_defaults_under_what_is_given(tmp_path):
    """train.task=next_event takes TASK_DEFAULTS for the keys nothing gave; a key given by a file, an override
    or a saved config keeps its value even where it equals the dataclass default."""
    from pipeline.config import TASK_DEFAULTS

    plain, nxt = load_config(), load_config(None, ["train.task=next_event"])
    assert (plain.video.fps, plain.data.val_fraction) == (10.0, 0.2)
    assert (nxt.video.fps, nxt.data.val_fraction, nxt.head.hidden_size, nxt.head.input_dropout, nxt.train.epochs,
            nxt.train.patience, nxt.views.streams) == (5.0, 0.34, 128, 0.5, 40, 15, ["crop", "diff", "mhi"])
    assert (plain.head.hidden_size, plain.train.epochs, plain.views.streams) == (64, 80, ["crop", "diff", "mhi"])
    assert set(TASK_DEFAULTS["next_event"]) == {"video.fps", "head.hidden_size", "head.input_dropout", "train.epochs",
                                                "train.patience", "data.val_fraction"}
    nxt.views.streams.append("flow")  # each config owns its list
    assert load_config(None, ["train.task=next_event"]).views.streams == ["crop", "diff", "mhi"]
    given = load_config(None, ["train.task=next_event", "video.fps=10"])
    assert (given.video.fps, given.data.val_fraction) == (10.0, 0.34)
    p = tmp_path / "x.yaml"
    p.write_text("train:\n  task: next_event\ndata:\n  val_fraction: 0.2\n")
    from_file = load_config(p)
    assert (from_file.data.val_fraction, from_file.video.fps) == (0.2, 5.0)
    saved = Config().to_dict()  # a checkpoint's config holds every key: nothing is replaced
    saved["train"]["task"] = "next_event"
    assert load_config(None, base=saved).video.fps == 10.0
    assert "(next_event task: 0.34)" in default_yaml()


def test_cli_cache_flag_beats_the_environment(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main
    from pipeline.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "d", 1, actions=("wave", "jump"), seed=0)
    monkeypatch.setenv("VAP_CACHE", str(tmp_path / "env"))
    assert main(["extract", "--data", str(data), "--cache", str(tmp_path / "mine"), "--quiet",
                 "backbone.name=tiny_cnn", "backbone.input_size=64", "views.streams=[frame]"]) in (0, None)
    # 2 videos and their 2 rewritten copies each (train.copies=2), as they are and mirrored (train.flip_aug=auto
    # mirrors wave/jump: training will read those); the copies are written under the cache folder too
    assert len(list((tmp_path / "mine").rglob("*.npz"))) == 12
    assert len(list((tmp_path / "mine" / "copies").glob("*.mp4"))) == 4
    assert not (tmp_path / "env").exists()
