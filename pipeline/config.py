"""Typed configuration: dataclass defaults, YAML files, key=value overrides, strict validation.

Every key is documented in configs/default.yaml (a test checks that file and these dataclasses
agree). Unknown keys and wrong types are errors that name the key, the way Ultralytics does it.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A bad key, a bad value or an unreadable config file."""


@dataclass
class DataConfig:
    train: str = ""              # class-folder root, CSV list or UCF101-style split folder
    val: str = ""                # same formats; empty = stratified split of `train`
    val_fraction: float = 0.2    # share of each class held out when `val` is empty
    split_seed: int = 0          # seed of that split (reproducible)
    group_by: str = ""           # regex on file names; a match keeps a group (actor) on one side
    ucf_split: int = 1           # which trainlist0N/testlist0N pair for UCF101-style folders
    background: str = "background"  # next_event: label of the gaps between segments ('' = ignore gaps)
    extensions: list[str] = field(default_factory=lambda: [
        ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"])


@dataclass
class VideoConfig:
    decoder: str = "auto"        # auto (decord, OpenCV fallback) | decord | opencv
    sampling: str = "fps"        # fps | count | all
    fps: float = 10.0            # target rate for sampling=fps
    num_frames: int = 16         # frames spread over the clip for sampling=count (TSN segments)
    max_side: int = 320          # downscale at decode time so the longer side <= this (0 = keep)
    chunk_mb: int = 32           # decode at most this many MB of frames at once (up to ~5 chunks in flight)


@dataclass
class ViewsConfig:
    # images of each sampled frame that go through the backbone (views.py): frame | crop | diff | flow
    # (the default was chosen from the Weizmann table in the README: bench/accuracy_weizmann.py --table)
    streams: list[str] = field(default_factory=lambda: ["crop", "diff"])
    crop_margin: float = 0.25    # margin around the moving region, each side, as a fraction of its size
    crop_min: float = 0.3        # smallest crop side, as a fraction of the frame's shorter side
    motion_steps: int = 5        # sampled frames whose frame differences make the moving region
    motion_threshold: int = 12   # grey-level change (0-255) that counts as motion
    motion_side: int = 160       # motion is found on a copy of the frame with this longer side (pixels)
    box_smooth: float = 0.5      # weight of the previous box in the moving average of the crop box
    diff_gain: float = 3.0       # diff stream: grey-level differences are multiplied by this
    flow_gain: float = 16.0      # flow stream: pixels of motion (at the crop's size) per grey level


@dataclass
class BackboneConfig:
    name: str = "efficientnet_lite0"  # registry name, see `vap backbones`
    weights: str = "default"     # default (offline pretrained or library default) | none | PATH
    input_size: int = 224        # square input side in pixels
    batch_size: int = 32         # frames per forward pass
    grid: int = 1                # pool the last feature map over grid x grid cells (1 = global average)
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    runtime: str = "torch"       # torch | onnxruntime | auto (measure once, keep the fastest correct path)
    precision: str = "fp32"      # fp32 | bf16 (CPUs with native bf16) | fp16 (CUDA) | auto
    channels_last: bool = False  # PyTorch runtime: channels-last memory format


@dataclass
class HeadConfig:
    type: str = "lstm"           # lstm | gru | meanpool
    hidden_size: int = 256       # recurrent state size
    num_layers: int = 1          # stacked recurrent layers
    bidirectional: bool = False  # bidirectional heads cannot stream
    dropout: float = 0.3         # between recurrent layers and before the classifier
    input_dropout: float = 0.2   # dropout on the (normalised, projected) frame features
    input_norm: bool = True      # LayerNorm on the frame features
    proj_dim: int = 256          # linear projection of the features before the RNN (0 = none)
    pool: str = "mean"           # clip logits from the mean of the step states or the last one
    skip: bool = True            # read-outs see [RNN state, projected input]: a residual path around the RNN
    time_head: bool = True       # next_event: also predict the seconds until the current segment ends
    next_mode: str = "both"      # next_event: direct | transition | both (see heads.RNNHead)


@dataclass
class TrainConfig:
    task: str = "classification"  # classification (trimmed clips) | next_event (segment annotations)
    epochs: int = 60             # maximum epochs
    batch_size: int = 16         # clips per step
    lr: float = 0.001            # AdamW learning rate of the head
    weight_decay: float = 0.01   # AdamW weight decay
    warmup_epochs: int = 3       # linear warm-up before the cosine schedule
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 1.0       # max global gradient norm (0 = off)
    max_len: int = 32            # random temporal crop length in steps (0 = whole clip)
    test_clips: int = 1          # multi-clip testing: average over this many max_len crops (1 = whole clip)
    speed_min: float = 0.8       # temporal speed jitter range (1.0 and 1.0 = off)
    speed_max: float = 1.25
    flip_aug: bool = False       # mirror half the training clips (features of flipped frames, cached)
    step_loss_weight: float = 0.5  # weight of the per-step loss beside the clip loss
    class_balance: str = "loss"  # loss (weighted CE) | sampler (weighted sampling) | none
    patience: int = 15           # early stopping: epochs without a better val metric (0 = off)
    refit: bool = False          # after early stopping, retrain on train+val for the best epoch count
    seed: int = 0                # seed for everything random in training
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    finetune_backbone: bool = False  # train the backbone end to end too (slow; GPU advised)
    backbone_lr: float = 0.0001  # learning rate of the backbone when fine-tuning
    finetune_blocks: int = 0     # train the last n backbone stages on cached trunk maps (0 = frozen backbone)
    seq_len: int = 128           # next_event: training window length in sampled steps
    windows_per_epoch: int = 0   # next_event: windows per epoch (0 = enough to cover the data twice)
    next_loss_weight: float = 1.0  # next_event: weight of the next-event loss beside the current-action loss
    time_loss_weight: float = 0.1  # next_event: weight of the time-to-end loss (smooth L1, seconds)


@dataclass
class CacheConfig:
    dir: str = "~/.cache/vap/features"  # feature cache folder ($VAP_CACHE replaces this default; an explicit value wins)
    dtype: str = "float16"       # float16 | float32 storage of cached features


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Allowed values of the string keys that are choices.
CHOICES = {
    "video.decoder": {"auto", "decord", "opencv"},
    "video.sampling": {"fps", "count", "all"},
    "views.streams": {"frame", "crop", "diff", "flow"},
    "head.type": {"lstm", "gru", "meanpool"},
    "train.task": {"classification", "next_event"},
    "backbone.runtime": {"torch", "onnxruntime", "auto"},
    "backbone.precision": {"fp32", "bf16", "fp16", "auto"},
    "head.next_mode": {"direct", "transition", "both"},
    "head.pool": {"mean", "last"},
    "train.class_balance": {"loss", "sampler", "none"},
    "cache.dtype": {"float16", "float32"},
}


def _check_value(key: str, value, typ):
    """Return `value` converted to `typ`, or raise ConfigError naming the key."""
    origin = typing.get_origin(typ)
    if origin is list:
        (inner,) = typing.get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_check_value(key, v, inner) for v in value]
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads '3e-4' as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        value = str(value)
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"config key '{key}' must be one of {sorted(CHOICES[key])}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {typ} for {key}")


def _section_types(section) -> dict:
    return typing.get_type_hints(type(section))


def apply_dict(cfg: Config, values: dict, source: str = "config") -> Config:
    """Apply a nested dict onto cfg in place, validating every key and value."""
    if values is None:
        return cfg
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    sections = {f.name for f in dataclasses.fields(cfg)}
    for sec_name, sec_values in values.items():
        if sec_name not in sections:
            raise ConfigError(f"{source}: unknown section '{sec_name}'; valid sections: {sorted(sections)}")
        section = getattr(cfg, sec_name)
        if sec_values is None:
            continue
        if not isinstance(sec_values, dict):
            raise ConfigError(f"{source}: section '{sec_name}' must be a mapping")
        types = _section_types(section)
        for key, value in sec_values.items():
            full = f"{sec_name}.{key}"
            if key not in types:
                raise ConfigError(f"{source}: unknown key '{full}'; valid keys in '{sec_name}': {sorted(types)}")
            setattr(section, key, _check_value(full, value, types[key]))
    return cfg


def parse_override(text: str) -> tuple[str, object]:
    """'train.epochs=10' -> ('train.epochs', 10); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key.count(".") != 1:
        raise ConfigError(f"override key '{key}' must be section.key (for example train.epochs)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                base: dict | None = None) -> Config:
    """Defaults, then `base` (e.g. a checkpoint's config), then the YAML file, then overrides."""
    cfg = Config()
    if base:
        apply_dict(cfg, base, "saved config")
    # $VAP_CACHE replaces the default and a checkpoint's saved folder, never a folder named in the
    # config file, an override or --cache (those are applied after it)
    if os.environ.get("VAP_CACHE"):
        cfg.cache.dir = os.environ["VAP_CACHE"]
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            values = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        apply_dict(cfg, values, str(p))
    for text in overrides:
        key, value = parse_override(text)
        sec, name = key.split(".")
        apply_dict(cfg, {sec: {name: value}}, f"override '{text}'")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-key and range checks that types alone do not catch."""
    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)
    need(0.0 <= cfg.data.val_fraction < 1.0, "config key 'data.val_fraction' must be in [0, 1)")
    need(cfg.video.fps > 0, "config key 'video.fps' must be > 0")
    need(cfg.video.num_frames >= 1, "config key 'video.num_frames' must be >= 1")
    need(cfg.video.chunk_mb >= 1, "config key 'video.chunk_mb' must be >= 1")
    need(len(cfg.views.streams) >= 1 and len(set(cfg.views.streams)) == len(cfg.views.streams),
         "config key 'views.streams' must list at least one of frame, crop, diff, flow, each once")
    need(cfg.views.crop_margin >= 0, "config key 'views.crop_margin' must be >= 0")
    need(0 < cfg.views.crop_min <= 1, "config key 'views.crop_min' must be in (0, 1]")
    need(cfg.views.motion_steps >= 1, "config key 'views.motion_steps' must be >= 1")
    need(0 <= cfg.views.motion_threshold < 255, "config key 'views.motion_threshold' must be in [0, 255)")
    need(cfg.views.motion_side >= 16, "config key 'views.motion_side' must be >= 16")
    need(0 <= cfg.views.box_smooth < 1, "config key 'views.box_smooth' must be in [0, 1)")
    need(cfg.backbone.input_size >= 32, "config key 'backbone.input_size' must be >= 32")
    need(1 <= cfg.backbone.grid <= 4, "config key 'backbone.grid' must be in 1..4")
    need(cfg.backbone.batch_size >= 1, "config key 'backbone.batch_size' must be >= 1")
    need(cfg.head.hidden_size >= 1, "config key 'head.hidden_size' must be >= 1")
    need(cfg.head.num_layers >= 1, "config key 'head.num_layers' must be >= 1")
    need(0.0 <= cfg.head.dropout < 1.0, "config key 'head.dropout' must be in [0, 1)")
    need(0.0 <= cfg.head.input_dropout < 1.0, "config key 'head.input_dropout' must be in [0, 1)")
    need(cfg.train.epochs >= 1, "config key 'train.epochs' must be >= 1")
    need(cfg.train.batch_size >= 1, "config key 'train.batch_size' must be >= 1")
    need(cfg.train.lr > 0, "config key 'train.lr' must be > 0")
    need(0 < cfg.train.speed_min <= cfg.train.speed_max,
         "config keys 'train.speed_min' <= 'train.speed_max' must both be > 0")
    need(0.0 <= cfg.train.label_smoothing < 1.0, "config key 'train.label_smoothing' must be in [0, 1)")
    need(cfg.train.test_clips >= 1, "config key 'train.test_clips' must be >= 1")
    need(cfg.train.seq_len >= 2, "config key 'train.seq_len' must be >= 2")
    need(cfg.train.windows_per_epoch >= 0, "config key 'train.windows_per_epoch' must be >= 0")
    need(cfg.train.finetune_blocks >= 0, "config key 'train.finetune_blocks' must be >= 0")
    need(not (cfg.train.finetune_blocks and cfg.train.finetune_backbone),
         "train.finetune_blocks and train.finetune_backbone exclude each other: the first trains the last "
         "stages on cached maps, the second the whole backbone on decoded frames")
    if cfg.train.task == "next_event":
        need(not cfg.train.finetune_blocks, "train.task=next_event trains on cached features: "
             "train.finetune_blocks must be 0")
        need(cfg.head.type in ("lstm", "gru"), "train.task=next_event needs head.type=lstm or gru")
        need(not cfg.head.bidirectional, "train.task=next_event needs a causal head: head.bidirectional=false")
        need(not cfg.train.finetune_backbone, "train.task=next_event trains on cached features: "
             "train.finetune_backbone must be false")


def save_config(cfg: Config, path: str | Path) -> None:
    from .io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
