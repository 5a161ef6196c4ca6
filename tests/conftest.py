"""Shared fixtures: small real video files written with OpenCV, read back through the real decoders."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Under pytest-xdist (scripts/test.sh runs one worker per core, at most four): each worker, and every process
# its tests start, gets its share of the cores, not all of them - two workers that each ran PyTorch and ONNX
# Runtime on every core would fight over them. Set before numpy and torch are imported, which read it once.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIZMANN = ROOT.parent / "shared" / "data" / "weizmann"
UT1 = ROOT.parent / "shared" / "data" / "ut_interaction_set1"

os.environ.setdefault("YOLO_OFFLINE", "True")
os.environ.setdefault("YOLO_VERBOSE", "False")
# backbone.runtime=auto remembers its measurements and ONNX exports in VAP_HOME: the session's own,
# shared with the processes the tests start, never the user's ~/.cache/vap
os.environ.setdefault("VAP_HOME", tempfile.mkdtemp(prefix="vap-home-"))


def _decoder_params():
    """Both decoders where decord is available; decord's case skips, saying why, where it is not
    (no wheel for this platform, or hidden by VAP_DECORD=0)."""
    from pipeline.data.video import decord_available

    skip = pytest.mark.skipif(not decord_available(), reason="decord not available (no wheel here, or VAP_DECORD=0)")
    return [pytest.param("decord", marks=skip), "opencv"]


DECODERS = _decoder_params()


def write_video(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    from pipeline.data.synthetic import write_video as _w

    _w(path, frames, fps)
    return path


def counter_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose content encodes their index: a bright bar at x = 2*i and a grey level."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, :] = (i * 7) % 200 + 20
        frames[i, :, (2 * i) % w: (2 * i) % w + 4] = 255
        frames[i, : h // 4, :, 0] = 0  # colour: RGB order must survive decoding
    return frames


# The test files that take longest, about longest first (a serial run on 2 cores, 2026-11-30: test_weizmann 250 s,
# test_scale 117 s, test_ut_interaction 102 s, test_next_event 81 s, the next six 45-71 s each). pytest-xdist
# hands whole files to its workers in collection order (scripts/test.sh: --dist loadfile --no-loadscope-reorder),
# so the long real-data files start at once and the short ones fill in around them; order within a file is kept.
# test_app sits ahead of its serial rank: it is the quick tier's longest file (61 s of ~196 s).
LONGEST_FIRST = ("test_weizmann.py", "test_scale.py", "test_ut_interaction.py", "test_next_event.py",
                 "test_app.py", "test_export.py", "test_train.py", "test_cli.py", "test_people.py",
                 "test_person_training.py", "test_bench.py", "test_cache.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable sort


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache unless it sets one."""
    monkeypatch.setenv("VAP_CACHE", str(tmp_path / "vap-cache"))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """4 classes x 12 synthetic clips (class folders of mp4), written once per session."""
    from pipeline.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("synth")
    return make_dataset(root / "train", 12, actions=("wave", "squat", "jump", "walk_right"), seed=0)


@pytest.fixture(scope="session")
def synth_test(tmp_path_factory) -> Path:
    from pipeline.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("synth_test")
    return make_dataset(root / "test", 4, actions=("wave", "squat", "jump", "walk_right"), seed=1)


def run_vap(*args, env=None):
    """The real CLI (pipeline.cli.main), in this process: (exit status, stdout, stderr). Tests where the
    process itself matters (kill -9, no torch import, the app server) start one of their own."""
    import contextlib
    import io

    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse: --help, usage errors
                code = e.code if isinstance(e.code, int) else 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code or 0, out.getvalue(), err.getvalue()


# A contract-test model: tiny_cnn (a small random-init CNN) and a small LSTM over the default views.
# train.ensemble=2: an ensemble still (the default's kind of head, streamed, exported and served), two heads
# to refit instead of five
TINY = ["backbone.name=tiny_cnn", "backbone.input_size=64", "views.motion_size=48", "video.fps=8",
        "head.hidden_size=32", "head.proj_dim=32", "train.batch_size=8", "train.ensemble=2", "train.copies=0"]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, synth_data) -> Path:
    """A real checkpoint made in seconds: tiny_cnn + LSTM, 3 epochs on the synthetic clips, every
    default view. Its predictions are not meant to be right (tiny_cnn learns nothing here); everything
    around them - decoding, views, cache, head, rows, streaming, export, the app - is the real thing."""
    from pipeline.config import load_config
    from pipeline.training.run import main

    out = tmp_path_factory.mktemp("tiny")
    cfg = load_config(None, [f"data.train={synth_data}", *TINY, "train.epochs=3", "train.patience=0",
                             "data.val_fraction=0.25"])
    cfg.cache.dir = str(out / "cache")
    main(cfg, out / "run", progress=False)
    return out / "run" / "best.pt"


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 features of the synthetic clips, shared by the slow tests that train on them."""
    return tmp_path_factory.mktemp("synth-cache")


# What trained_ckpt trains (and test_train's head comparison, on the same cached features). Features
# come from ONNX Runtime: the same as PyTorch fp32 to ~1e-6 (test_export), about 3x faster on a CPU. No rewritten
# copies (as the demo): the synthetic clips and their test clips come from one writer.
TRAINED = ["backbone.input_size=160", "video.fps=8", "train.epochs=40", "train.patience=0", "data.val_fraction=0.25",
           "backbone.runtime=onnxruntime", "train.copies=0"]


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory, synth_data, synth_cache) -> Path:
    """A real model for the accuracy tests (slow): EfficientNet-Lite0 features + LSTM trained on the
    synthetic classes."""
    from pipeline.config import load_config
    from pipeline.training.run import main

    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [f"data.train={synth_data}", *TRAINED])
    cfg.cache.dir = str(synth_cache)
    main(cfg, out / "run", progress=False)
    return out / "run" / "best.pt"


@pytest.fixture(scope="session")
def people_videos(tmp_path_factory):
    """2 videos of 2-3 people (the first two cross), 6 s, with their truth: seeds no detector saw."""
    from pipeline.data.people import make_people_videos

    return make_people_videos(tmp_path_factory.mktemp("people") / "p", videos=2, seconds=6.0, seed=5)


def truncated_video(path: Path, keep: float = 0.4) -> Path:
    """A 4 s wave clip (25 fps, H.264 with its index at the front, as uploads and cameras write it)
    cut to its first `keep` of bytes: the container still claims 100 frames; the rest is gone."""
    full = long_video(path.with_name(f"full-{path.name}"), ["wave"], seconds=4.0)
    data = full.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def long_video(path: Path, actions, seconds: float = 4.0, seed: int = 7) -> Path:
    """Concatenate synthetic clips of `actions`, `seconds` each, into one video (known boundaries)."""
    from pipeline.data.synthetic import render_clip

    parts = [render_clip(a, np.random.default_rng([seed, i]), duration=seconds) for i, a in enumerate(actions)]
    return write_video(path, np.concatenate(parts), fps=25.0)
