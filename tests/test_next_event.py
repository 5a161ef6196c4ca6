"""Next-event prediction: annotations, grammars, composed and synthetic sequences, training through
the real CLI on real (synthetic) videos, evaluation against the Bayes limit, streaming = offline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.data.datasets import DataError
from pipeline.data.grammar import GrammarError, cycle_grammar, grammar_from_dict, load_grammar
from pipeline.data.segments import AnnotatedVideo, Segment, boundaries, check_duration, load_annotations, step_targets

from conftest import ROOT, TINY, run_vap, write_video

GRAMMAR = ROOT / "configs" / "grammars" / "synthetic.yaml"
# The default views and head (crop + diff, skip read-out): since the smaller default head they are no
# worse than the whole frame here (0.757 against 0.737 over all steps, docs/results.md), so the one
# slow training of this file is the configuration users get. Smaller input, 5 fps and 30 epochs keep it
# to about 40 s on 2 cores; ONNX Runtime gives fp32 features as PyTorch's (to ~1e-6), ~3x faster.
TRAIN_OVERRIDES = ["backbone.input_size=160", "video.fps=5", "train.epochs=30", "train.patience=0",
                   "data.val_fraction=0.2", "backbone.runtime=onnxruntime"]


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def two_videos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / name, rng.integers(0, 255, (50, 32, 32, 3), dtype=np.uint8), fps=10)
    return tmp_path


# ----------------------------------------------------------------------------- annotations

def test_annotations_parse_any_order(two_videos):
    f = _csv(two_videos / "ann.csv", "video,start,end,label\nb.mp4,0,2,x\na.mp4,2.5,5,y\na.mp4,0,2,x\n")
    ann = load_annotations(f)
    assert ann.labels == ["x", "y"]
    a = next(v for v in ann.videos if v.path.endswith("a.mp4"))
    assert [(g.start, g.label) for g in a.segments] == [(0.0, "x"), (2.5, "y")]


@pytest.mark.parametrize("body, problem", [
    ("a.mp4,0,3,x\na.mp4,2,4,y\n", "ann.csv:3: segment 2-4 s 'y' overlaps row 2"),
    ("a.mp4,3,3,x\n", "ann.csv:2: end (3 s) must be after start (3 s)"),
    ("a.mp4,4,1,x\n", "ann.csv:2: end (1 s) must be after start (4 s)"),
    ("missing.mp4,0,1,x\n", "ann.csv:2: unknown video"),
    ("a.mp4,zero,1,x\n", "ann.csv:2: start 'zero' is not a number"),
    ("a.mp4,0,1,\n", "ann.csv:2: empty label"),
    ("a.mp4,0,1\n", "ann.csv:2: expected 4 fields"),
])
def test_annotation_errors_name_the_row(two_videos, body, problem):
    f = _csv(two_videos / "ann.csv", "video,start,end,label\n" + body)
    with pytest.raises(DataError) as e:
        load_annotations(f)
    assert problem in str(e.value)


def test_annotation_header_and_past_end(two_videos):
    with pytest.raises(DataError, match="header must be video,start,end,label"):
        load_annotations(_csv(two_videos / "h.csv", "path,label\na.mp4,x\n"))
    ann = load_annotations(_csv(two_videos / "ann.csv", "video,start,end,label\na.mp4,0,2,x\na.mp4,2,9,y\n"))
    with pytest.raises(DataError, match=r"ann.csv:3: segment 2-9 s 'y' runs past the end of a.mp4 \(5.00 s\)"):
        check_duration(ann.videos[0], 5.0, str(two_videos / "ann.csv"))


def test_step_targets_with_gaps():
    v = AnnotatedVideo("v", [Segment(1, 3, "a"), Segment(4, 6, "b"), Segment(6, 7, "c")])
    idx = {"a": 0, "b": 1, "c": 2, "background": 3}
    t = np.array([0.0, 1.0, 2.5, 3.5, 4.0, 6.5, 7.5])
    cur, nxt, tte = step_targets(v, t, idx, "background")
    assert cur.tolist() == [3, 0, 0, 3, 1, 2, 3]
    assert nxt.tolist() == [0, 1, 1, 1, 2, -1, -1]  # gaps are skipped: "next" names an action
    np.testing.assert_allclose(tte[:6], [1.0, 2.0, 0.5, 0.5, 2.0, 0.5])
    assert np.isnan(tte[6])
    cur, _, _ = step_targets(v, t, idx, "")  # background off: steps in gaps carry no current label
    assert cur.tolist() == [-1, 0, 0, -1, 1, 2, -1]
    assert boundaries(v, idx) == [(1, 0), (4, 1), (6, 2)]


# ----------------------------------------------------------------------------- grammars

def test_grammar_file_and_bayes_limit():
    g = load_grammar(GRAMMAR)
    assert g.actions == ["wave", "clap", "jump", "squat"]
    assert g.bayes_limit() == pytest.approx(0.8)
    np.testing.assert_allclose(g.stationary(), 0.25, atol=1e-9)
    segs = g.sample(np.random.default_rng(0), 30.0)
    assert sum(d for _, d in segs) == pytest.approx(30.0)
    assert all(2.0 - 1e-9 <= d <= 4.0 for _, d in segs[:-1])
    # the chain is followed: every transition has non-zero probability
    idx = g.index
    assert all(g.transitions[idx[a], idx[b]] > 0 for (a, _), (b, _) in zip(segs, segs[1:]))


@pytest.mark.parametrize("d, problem", [
    ({"actions": ["a", "b"], "transitions": {"a": {"b": 1.0}}}, "no transitions for ['b']"),
    ({"actions": ["a", "b"], "transitions": {"a": {"b": 0.5}, "b": {"a": 1}}}, "sum to 0.5"),
    ({"actions": ["a", "b"], "transitions": {"a": {"c": 1.0}, "b": {"a": 1}}}, "unknown action 'c'"),
    ({"actions": ["a", "b"], "transitions": {"a": {"b": 1}, "b": {"a": 1}}, "duration": [3, 1]}, "duration"),
])
def test_grammar_errors(d, problem):
    with pytest.raises(GrammarError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        grammar_from_dict(d, "g.yaml")


# ----------------------------------------------------------------------------- synthetic and composed sequences

def test_make_sequences_annotations_match_video(tmp_path):
    from pipeline.data.synthetic import make_sequences
    from pipeline.data.video import probe

    out = make_sequences(tmp_path / "seq", load_grammar(GRAMMAR), videos=2, seconds=8, seed=3, fps=10)
    ann = load_annotations(out / "annotations.csv")
    assert len(ann.videos) == 2
    for v in ann.videos:
        assert v.segments[0].start == 0
        assert all(a.end == pytest.approx(b.start) for a, b in zip(v.segments, v.segments[1:]))
        assert v.segments[-1].end == pytest.approx(probe(v.path).duration, abs=0.11)


def test_compose_keeps_groups_and_follows_grammar(tmp_path):
    from pipeline.data.compose import compose
    from pipeline.data.synthetic import render_clip

    clips = tmp_path / "clips"
    for a in ("wave", "jump", "squat"):
        for g in ("ann", "bob"):
            write_video(clips / a / f"{g}_{a}.mp4", render_clip(a, np.random.default_rng(len(a)), duration=1.2),
                        fps=25)
    (clips / "jump" / "bob_broken.mp4").write_bytes(b"not a video")
    grammar = cycle_grammar(["wave", "jump", "squat"], 1.0, (1.0, 2.0))  # deterministic cycle
    s = compose(clips, grammar, tmp_path / "out", sequences=3, seconds=6, group_by=r"^([a-z]+)_", seed=0,
                fps=10, progress=False)
    assert s["videos"] == 3 and s["groups"] == ["ann", "bob"]
    ann = load_annotations(tmp_path / "out" / "annotations.csv")
    assert sorted(Path(v.path).name for v in ann.videos) == ["ann_seq_000.mp4", "ann_seq_002.mp4", "bob_seq_001.mp4"]
    manifest = json.loads((tmp_path / "out" / "compose.json").read_text())
    for m in manifest["sequences"]:
        assert all(Path(sg["clip"]).name.startswith(m["group"] + "_") for sg in m["segments"])
    for v in ann.videos:
        labels = [g.label for g in v.segments]
        assert all(grammar.transitions[grammar.index[a], grammar.index[b]] == 1.0 for a, b in zip(labels, labels[1:]))
    with pytest.raises(DataError, match="have no class folder"):
        compose(clips, cycle_grammar(["wave", "clap"]), tmp_path / "x", 1, 4, progress=False)
    with pytest.raises(DataError, match="group\\(s\\) \\['zed'\\] not found"):
        compose(clips, grammar, tmp_path / "x", 1, 4, r"^([a-z]+)_", ["zed"], progress=False)


def test_compose_with_clip_durations_plays_each_clip_once_whole(tmp_path):
    """duration: clip (actions that happen once in their clip, as UT-Interaction's): every segment is its
    clip from the first frame to the last, played once - never a slice that misses the action or a loop
    that shows it twice; the last segment is cut at the sequence's end. A rerun keeps the videos it would
    write the same way and rewrites those another plan changes."""
    from pipeline.data.compose import compose
    from pipeline.data.synthetic import render_clip
    from pipeline.data.video import probe

    clips, lengths = tmp_path / "clips", {}
    for i, a in enumerate(("wave", "jump", "squat")):
        lengths[a] = 0.8 + 0.4 * i  # 0.8, 1.2, 1.6 s: each action its own length
        write_video(clips / a / f"ann_{a}.mp4", render_clip(a, np.random.default_rng(i), duration=lengths[a]), fps=25)
    grammar = grammar_from_dict(dict(actions=["wave", "jump", "squat"], duration="clip",
                                     transitions=dict(wave={"jump": 1.0}, jump={"squat": 1.0}, squat={"wave": 1.0})))
    assert grammar.duration is None and grammar.to_dict()["duration"] == "clip"
    with pytest.raises(GrammarError, match="duration: clip"):  # synthetic sequences need seconds
        grammar.sample(np.random.default_rng(0), 5)
    out = tmp_path / "out"
    compose(clips, grammar, out, sequences=2, seconds=5, fps=10, progress=False)
    for v in load_annotations(out / "annotations.csv").videos:
        *whole, last = v.segments
        assert len(whole) >= 2 and all(g.end - g.start == pytest.approx(lengths[g.label], abs=0.051) for g in whole)
        assert last.end - last.start <= lengths[last.label] + 0.051 and last.end == pytest.approx(5.0)
        assert probe(v.path).duration == pytest.approx(5.0, abs=0.11)
    manifest = json.loads((out / "compose.json").read_text())
    assert {sg["offset"] for m in manifest["sequences"] for sg in m["segments"]} == {0.0}
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    compose(clips, grammar, out, sequences=2, seconds=5, fps=10, progress=False)  # the same plan: kept
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == mtimes
    compose(clips, grammar, out, sequences=2, seconds=4, fps=10, progress=False)  # another plan: rewritten
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in out.glob("*.mp4"))
    assert all(probe(v.path).duration == pytest.approx(4.0, abs=0.11)
               for v in load_annotations(out / "annotations.csv").videos)
    with pytest.raises(GrammarError, match="or clip"):
        grammar_from_dict(dict(actions=["a", "b"], transitions=dict(a={"b": 1}, b={"a": 1}), duration="loop"))


def test_training_and_test_groups_composed_apart_share_one_canvas(tmp_path):
    """Training and test sequences come from two calls (other groups): both get the canvas of the folder's largest
    clip, so the same camera's people have one size in both once the decoder scales the frames to max_side (each
    call's own largest clip made the test pairs' people 1.6 times larger on UT-Interaction)."""
    from pipeline.data.compose import compose
    from pipeline.data.video import probe

    clips = tmp_path / "clips"
    for a in ("wave", "jump"):
        write_video(clips / a / f"ann_{a}.mp4", np.full((10, 48, 64, 3), 200, np.uint8), fps=10)
        write_video(clips / a / f"bob_{a}.mp4", np.full((10, 96, 128, 3), 120, np.uint8), fps=10)
    grammar = cycle_grammar(["wave", "jump"], 1.0, (1.0, 1.0))
    for group in ("ann", "bob"):
        s = compose(clips, grammar, tmp_path / group, sequences=1, seconds=2, group_by=r"^([a-z]+)_",
                    groups=[group], fps=10, progress=False)
        assert s["size"] == [128, 96]
        (v,) = load_annotations(tmp_path / group / "annotations.csv").videos
        info = probe(v.path)
        assert (info.width, info.height) == (128, 96)


def test_compose_keeps_each_clips_shape_on_one_canvas(tmp_path):
    """Clips of other shapes (UT-Interaction's are each cropped around their pair) are centred on one canvas
    with black bars, never stretched to the first clip's shape: by default the largest clip's size, every
    clip unscaled; with size= each scaled to fit, aspect kept. A rerun at another size rewrites the videos."""
    from pipeline.data.compose import compose
    from pipeline.data.video import load_frames

    clips = tmp_path / "clips"
    write_video(clips / "wave" / "ann_wave.mp4", np.full((10, 48, 64, 3), 200, np.uint8), fps=10)  # wide
    write_video(clips / "jump" / "ann_jump.mp4", np.full((10, 48, 32, 3), 120, np.uint8), fps=10)  # tall
    grammar = grammar_from_dict(dict(actions=["wave", "jump"], duration="clip", start=dict(wave=1.0),
                                     transitions=dict(wave={"jump": 1.0}, jump={"wave": 1.0})))
    out = tmp_path / "out"
    s = compose(clips, grammar, out, sequences=1, seconds=4, fps=10, progress=False)
    assert s["size"] == [64, 48]
    (v,) = load_annotations(out / "annotations.csv").videos
    f, ts = load_frames(v.path, sampling="all")
    assert f.shape[1:3] == (48, 64)
    mean = lambda a: float(a.mean())  # noqa: E731
    wave, jump = (f[(ts > g.start + 0.05) & (ts < g.end - 0.05)] for g in v.segments[:2])
    assert [g.label for g in v.segments[:2]] == ["wave", "jump"]
    assert abs(mean(wave) - 200) < 8  # the largest clip fills the canvas
    assert abs(mean(jump[:, :, 20:44]) - 120) < 8 and mean(jump[:, :, :12]) < 8 and mean(jump[:, :, 52:]) < 8
    mtime = Path(v.path).stat().st_mtime_ns
    spec = _csv(tmp_path / "g.yaml", "actions: [wave, jump]\nstart: {wave: 1}\nduration: clip\n"
                                     "transitions: {wave: {jump: 1}, jump: {wave: 1}}\n")
    args = ["compose", "--clips", str(clips), "--grammar", str(spec), "--out", str(out), "--sequences", "1",
            "--seconds", "4", "--fps", "10", "--quiet", "--size"]
    code, _, err = run_vap(*args, "96")
    assert code == 2 and "--size '96': expected WIDTHxHEIGHT" in err
    code, stdout, _ = run_vap(*args, "96x96")
    assert code == 0 and json.loads(stdout)["size"] == [96, 96]
    assert Path(v.path).stat().st_mtime_ns != mtime  # another size: rewritten
    f, ts = load_frames(v.path, sampling="all")
    wave, jump = (f[(ts > g.start + 0.05) & (ts < g.end - 0.05)] for g in v.segments[:2])
    # wave 64x48 x1.5 -> 96x72 (rows 12-84); jump 32x48 x2 -> 64x96 (columns 16-80)
    assert abs(mean(wave[:, 16:80]) - 200) < 8 and mean(wave[:, :8]) < 8 and mean(wave[:, 88:]) < 8
    assert abs(mean(jump[:, :, 20:76]) - 120) < 8 and mean(jump[:, :, :12]) < 8 and mean(jump[:, :, 84:]) < 8


def test_next_event_head_streams_like_full_pass():
    from pipeline.config import HeadConfig
    from pipeline.models.heads import build_head

    for mode in ("direct", "transition", "both"):
        head = build_head(HeadConfig(next_mode=mode), 20, 5, next_event=True).eval()
        x = torch.randn(2, 9, 20)
        full = head(x)
        state = None
        for t in range(9):
            out, state = head.step(x[:, t], state)
            torch.testing.assert_close(out.next, full.next[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.time, full.time[:, t], atol=1e-5, rtol=1e-5)
        assert (full.time >= 0).all()
    with pytest.raises(ValueError, match="causal"):
        build_head(HeadConfig(bidirectional=True), 20, 5, next_event=True)


# ----------------------------------------------------------------------------- training, evaluation, inference

def _sequences(root: Path, train: tuple[int, float], test: tuple[int, float]) -> tuple[Path, Path]:
    """(videos, seconds) of grammar sequences for training and testing: their annotation CSVs."""
    from pipeline.data.synthetic import make_sequences

    g = load_grammar(GRAMMAR)
    return tuple(make_sequences(root / name, g, videos=n, seconds=sec, seed=seed, fps=10) / "annotations.csv"
                 for name, (n, sec), seed in (("train", train, 0), ("test", test, 1)))


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    """Enough grammar sequences to learn the grammar (the accuracy tests)."""
    return _sequences(tmp_path_factory.mktemp("nextseq"), (36, 15), (8, 30))


@pytest.fixture(scope="module")
def next_ckpt(tmp_path_factory, seq_data):
    """EfficientNet-Lite0 + LSTM trained for the next event through the CLI (slow tests)."""
    out = tmp_path_factory.mktemp("nextrun")
    code, stdout, err = run_vap("train", "--data", seq_data[0], "--task", "next_event", "--out", out / "run",
                                "--cache", out / "cache", "--quiet", *TRAIN_OVERRIDES)
    assert code == 0, err
    return out / "run" / "best.pt", out / "cache"


@pytest.fixture(scope="module")
def small_seq(tmp_path_factory):
    """A few short grammar sequences for the contract tests."""
    return _sequences(tmp_path_factory.mktemp("smallseq"), (6, 8), (2, 8))


TINY_NEXT = [*TINY, "video.fps=5", "train.epochs=2", "train.patience=0", "data.val_fraction=0.34", "train.seq_len=16"]


@pytest.fixture(scope="module")
def tiny_next(tmp_path_factory, small_seq):
    """A next-event checkpoint made in seconds (tiny_cnn) through the real CLI: the run directory's
    contract, and the model for the streaming, predict and export tests."""
    out = tmp_path_factory.mktemp("tinynext")
    code, stdout, err = run_vap("train", "--data", small_seq[0], "--task", "next_event", "--out", out / "run",
                                "--cache", out / "cache", "--quiet", *TINY_NEXT)
    assert code == 0, err
    m = json.loads(stdout)
    assert m["task"] == "next_event" and m["classes"] == ["clap", "jump", "squat", "wave"]
    for f in ("best.pt", "last.pt", "metrics.json", "config.yaml", "split.csv", "log.csv", "curves.png",
              "confusion_val.png"):
        assert (out / "run" / f).is_file(), f
    # train.refit: best.pt is a fresh head trained on the training and validation videos for the chosen epochs
    from pipeline.models.checkpoint import load_checkpoint

    ckpt, last = load_checkpoint(out / "run" / "best.pt"), load_checkpoint(out / "run" / "last.pt")
    assert m["refit"] and ckpt["refit"] == dict(epochs=m["best_epoch"], heads=m["heads"],
                                                videos=m["train_videos"] + m["val_videos"])
    first = "members.0." if m["heads"] > 1 else ""  # train.ensemble: the refit's first head
    assert any((ckpt["head_state"][first + k] != v).any() for k, v in last["head_state"].items())
    return out / "run" / "best.pt", out / "cache"


@pytest.mark.slow
def test_next_action_near_bayes_limit(next_ckpt, seq_data, tmp_path):
    ckpt, cache = next_ckpt
    code, stdout, err = run_vap("eval", "--checkpoint", ckpt, "--data", seq_data[1], "--cache", cache,
                                "--out", tmp_path, "--quiet")
    assert code == 0, err
    rep = json.loads(stdout)
    g = load_grammar(GRAMMAR)
    test = load_annotations(seq_data[1])
    # references on the same test steps: the Bayes limit knowing the true current action, and the
    # best model that knows only how often each action comes next
    labels = [b.label for v in test.videos for b in v.segments[1:]]
    freq = max(labels.count(c) for c in set(labels)) / len(labels)
    bayes = g.bayes_limit()
    print("synthetic next events, default views:", {k: rep[k] for k in ("current_top1", "next_top1", "time_to_end_mae_s")},
          "1 s before:", rep["anticipation"]["1s"]["top1"], "Bayes limit:", bayes)
    assert rep["current_top1"] > 0.8, rep
    assert rep["next_top1"] >= bayes - 0.12, rep
    assert rep["next_top1"] >= freq + 0.3, (rep, freq)
    assert rep["anticipation"]["1s"]["top1"] >= bayes - 0.15, rep
    assert rep["anticipation"]["1s"]["n"] >= 50
    assert set(rep["anticipation"]) == {"0.5s", "1s", "2s"}
    assert 0 < rep["time_to_end_mae_s"] < 1.0, rep  # segments last 2-4 s
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "confusion_eval.png").is_file()
    # the learned transition matrix recovers the grammar's most likely successors
    from pipeline.models.checkpoint import head_of, load_checkpoint

    ck = load_checkpoint(ckpt)
    T = head_of(ck).transition_matrix().numpy()
    cls = ck["classes"]
    for a in g.actions:
        assert cls[int(T[cls.index(a)].argmax())] == g.actions[int(g.transitions[g.index[a]].argmax())]


def test_streaming_next_event_equals_offline(tiny_next, small_seq):
    from pipeline.data.video import load_frames
    from pipeline.inference.predict import Predictor, StreamingPredictor

    ckpt, _ = tiny_next
    video = load_annotations(small_seq[1]).videos[0].path
    off = Predictor.from_checkpoint(ckpt, "cpu").predict(video)
    assert off.next_probs.shape == off.step_probs.shape and off.time_to_end.shape == off.step_times.shape
    frames, ts = load_frames(video, sampling="all")
    sp = StreamingPredictor.from_checkpoint(ckpt, "cpu")
    got = [sp.push(f, t) for f, t in zip(frames, ts)]
    enc = [r for r in got if r.encoded]
    assert len(enc) == len(off.step_times)
    np.testing.assert_allclose([r.timestamp for r in enc], off.step_times, atol=1e-6)
    np.testing.assert_allclose(np.stack([r.next_probs for r in enc]), off.next_probs, atol=1e-4)
    np.testing.assert_allclose([r.time_to_end for r in enc], off.time_to_end, atol=1e-4)
    d = off.to_dict(timeline=True)
    assert d["next"]["label"] == enc[-1].next_topk[0][0] and len(d["next_timeline"]) == len(enc)


def test_predict_cli_reports_next_event(tiny_next, small_seq, tmp_path):
    ckpt, _ = tiny_next
    video = load_annotations(small_seq[1]).videos[1].path
    code, _, err = run_vap("predict", "--checkpoint", ckpt, video, "--out", tmp_path / "p.jsonl", "--timeline",
                           "--quiet", "--device", "cpu")
    assert code == 0, err
    row = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert row["next"]["label"] in {"clap", "jump", "squat", "wave"} and 0 < row["next"]["prob"] <= 1
    assert row["next"]["in_s"] >= 0
    steps = row["next_timeline"]
    assert len(steps) == row["frames"] and {"t", "label", "prob", "current", "in_s"} <= set(steps[0])
    code, _, err = run_vap("predict", "--checkpoint", ckpt, video, "--out", tmp_path / "p.csv", "--quiet",
                           "--device", "cpu")
    assert code == 0, err
    import csv

    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert rows[0]["next_label"] == row["next"]["label"]


def test_next_event_flip_reads_the_mirrored_features_of_half_the_windows(tiny_next, small_seq):
    """train.flip_aug=auto mirrors for the next-event task too where no label names a direction (as for
    classification): vap train fills the mirrored frames' features of every training and validation video
    (refit trains on both: vap extract finds them all cached), and an epoch reads about half its windows from
    the mirrored features of the same video - none with flip_aug=false."""
    import yaml

    from pipeline.config import load_config
    from pipeline.models.heads import build_head
    from pipeline.training.loop import wants_flip
    from pipeline.training.next_event import Sequence, train_one_epoch

    ckpt, cache = tiny_next  # labels clap, jump, squat, wave: nothing a mirror would swap
    assert yaml.safe_load((ckpt.parent / "config.yaml").read_text())["train"]["flip_aug"] == "true"
    assert not wants_flip("auto", ["wave", "walk_left"]) and wants_flip("true", ["walk_left"])
    code, stdout, err = run_vap("extract", "--data", small_seq[0], "--cache", cache, "--quiet", *TINY_NEXT)
    summary = json.loads(stdout)
    assert code == 0 and summary["extracted"] == 0, err
    assert summary["mirrored"] == dict(videos=6, extracted=0, reused=6), summary
    code, stdout, err = run_vap("extract", "--data", small_seq[0], "--cache", cache, "--quiet", *TINY_NEXT,
                                "train.flip_aug=false")
    assert code == 0 and json.loads(stdout)["mirrored"]["videos"] == 0, err

    T, D = 40, 16  # video i: plain features 2i, mirrored 2i + 1; the model records what each window read
    seqs = [Sequence(f"v{i}", torch.full((T, D), 2.0 * i), np.arange(T) / 5, torch.randint(0, 3, (T,)),
                     torch.randint(0, 3, (T,)), torch.ones(T), [], torch.full((T, D), 2.0 * i + 1))
            for i in range(4)]

    class Recorder(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head, self.seen = head, []

        def forward(self, x, lengths):
            assert bool((x == x[:, :1, :1]).all())  # each window reads one video's features, all plain or all mirrored
            self.seen += x[:, 0, 0].tolist()
            return self.head(x, lengths)

    for flip, share in (("true", (0.25, 0.75)), ("false", (0.0, 0.0))):
        cfg = load_config(None, ["train.task=next_event", "train.seq_len=8", "train.batch_size=4",
                                 f"train.flip_aug={flip}", "head.hidden_size=8", "head.proj_dim=8"])
        head = build_head(cfg.head, D, 3, next_event=True)
        rec = Recorder(head)
        train_one_epoch(head, seqs, torch.optim.AdamW(head.parameters()), cfg, np.random.default_rng(0), "cpu",
                        model=rec)
        mirrored = [v % 2 == 1 for v in rec.seen]
        assert len(rec.seen) == 40 and share[0] <= np.mean(mirrored) <= share[1], (flip, np.mean(mirrored))


def test_next_event_resume_and_bad_annotations(tiny_next, small_seq, tmp_path):
    _, cache = tiny_next
    args = ["--data", small_seq[0], "--cache", cache, "--quiet", "--out", tmp_path / "r", *TINY_NEXT]
    code, _, err = run_vap("train", *args)  # the task comes from the CSV's header
    assert code == 0, err
    code, stdout, err = run_vap("train", "--out", tmp_path / "r", "--resume", "--cache", cache, "--quiet",
                                "train.epochs=3")
    assert code == 0, err
    assert json.loads(stdout)["epochs_run"] == 3
    code, stdout, err = run_vap("extract", "--data", small_seq[0], "--cache", cache, "--quiet",
                                *TINY)  # annotation CSVs work here too; fps 8 is not cached yet
    assert code == 0, err
    assert json.loads(stdout)["extracted"] == 6
    code, stdout, err = run_vap("extract", "--data", small_seq[0], "--cache", cache, "--quiet", *TINY)
    assert json.loads(stdout)["reused"] == 6
    # no rate given: vap extract reads annotations at the next-event task's own (config.TASK_DEFAULTS), as
    # vap train does, so training finds every feature it needs already cached
    own_rate, c5 = [a for a in TINY if not a.startswith("video.fps=")], tmp_path / "c5"
    code, stdout, err = run_vap("extract", "--data", small_seq[0], "--cache", c5, "--quiet", *own_rate)
    assert code == 0 and json.loads(stdout)["extracted"] == 6, err
    cached = sorted(c5.rglob("*.npz"))
    code, _, err = run_vap("train", "--data", small_seq[0], "--cache", c5, "--quiet", "--out", tmp_path / "r5",
                           *own_rate, "train.epochs=1")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "r5" / "config.yaml").read_text())  # the task's defaults, TINY's keys stand
    assert (saved["video"]["fps"], saved["data"]["val_fraction"], saved["head"]["input_dropout"],
            saved["head"]["hidden_size"]) == (5.0, 0.34, 0.5, 32)
    assert sorted(c5.rglob("*.npz")) == cached
    v = load_annotations(small_seq[0]).videos
    bad = _csv(tmp_path / "bad.csv", f"video,start,end,label\n{v[0].path},0,5,x\n{v[1].path},0,99,x\n")
    code, _, err = run_vap("train", "--data", bad, "--cache", cache, "--quiet", "--out", tmp_path / "b", *TINY_NEXT)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(f"error: {bad}:3: segment 0-99 s 'x' runs past the end")


def test_next_event_onnx_export_streams(tiny_next, small_seq, tmp_path):
    pytest.importorskip("onnxruntime")
    from pipeline.inference.export import export_onnx
    from pipeline.inference.onnx_predict import OnnxModel, OnnxPredictor
    from pipeline.inference.predict import Predictor

    ckpt, _ = tiny_next
    s = export_onnx(ckpt, tmp_path / "onnx")
    assert s["kind"] == "next_event" and s["check"]["step_prob_max_diff"] < 1e-4
    video = load_annotations(small_seq[1]).videos[1].path
    a = OnnxPredictor(OnnxModel(tmp_path / "onnx")).predict(video)
    b = Predictor.from_checkpoint(ckpt, "cpu").predict(video)
    np.testing.assert_allclose(a.next_probs, b.next_probs, atol=1e-3)
    np.testing.assert_allclose(a.time_to_end, b.time_to_end, atol=1e-3)
    assert a.next_event()["label"] == b.next_event()["label"]
