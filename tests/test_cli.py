import json

import pytest

from conftest import TINY, run_vap


def test_help_for_every_subcommand():
    for sub in ["", "train", "eval", "extract", "synth", "demo", "backbones"]:
        code, out, err = run_vap(*([sub] if sub else []), "--help")
        assert code == 0 and "usage: vap" in out


def test_train_then_eval_through_the_cli(tmp_path, synth_data, synth_test):
    run = tmp_path / "run"
    code, out, err = run_vap("train", "--data", synth_data, "--out", run, "--quiet", *TINY, "train.epochs=2")
    assert code == 0, err
    metrics = json.loads(out)  # stdout is pure JSON; progress went to stderr
    assert metrics["checkpoint"] == str(run / "best.pt") and metrics["epochs_run"] == 2
    assert metrics["val_top1"] == json.loads((run / "metrics.json").read_text())["val_top1"]
    assert metrics["train_clips"] + metrics["val_clips"] == 48
    code, out, err = run_vap("eval", "--checkpoint", run / "best.pt", "--data", synth_test, "--quiet")
    assert code == 0, err
    rep = json.loads(out)
    cm = rep["confusion_matrix"]  # rows: true classes, in the model's class order
    assert rep["num_clips"] == 16 and sum(map(sum, cm)) == 16 and [sum(r) for r in cm] == [4, 4, 4, 4]
    assert rep["top1"] == sum(cm[i][i] for i in range(4)) / 16 and rep["top5"] == 1.0  # 4 classes: all in the top 5
    assert rep == json.loads((run / "eval.json").read_text()) | {"outputs": rep["outputs"]}
    assert (run / "confusion_eval.png").stat().st_size > 1000
    assert (run / "per_class_eval.csv").read_text().startswith("class,accuracy,support")


def test_eval_names_each_unreadable_video_with_its_reason(tmp_path, tiny_ckpt, synth_test):
    import shutil

    data = tmp_path / "test"
    shutil.copytree(synth_test, data)
    bad = data / "wave" / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    code, out, err = run_vap("eval", "--checkpoint", tiny_ckpt, "--data", data, "--quiet")
    rep = json.loads(out)
    assert code == 1 and rep["num_clips"] == 16 and list(rep["failed"]) == [str(bad)]
    reason = rep["failed"][str(bad)]
    assert reason.startswith(f"{bad}: ") and len(reason) > len(str(bad)) + 10, reason  # the path and why
    assert f"skipped: {reason}" in err


def test_extract_reports_bad_videos_and_resumes(tmp_path, synth_data):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "wave" / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (data / "jump" / "zero.avi").write_bytes(b"")
    args = ["extract", "--data", data, "--quiet", "backbone.name=tiny_cnn", "backbone.input_size=64"]
    code, out, err = run_vap(*args)
    s = json.loads(out)
    # and the two rewritten copies of each readable clip that training reads beside it (train.copies=2)
    assert code == 1 and s["videos"] == 50 and s["copies"] == 96 and s["extracted"] == 48 + 96 and s["failed"] == 2
    assert "corrupt.mp4" in err and "zero.avi: empty file" in err
    assert "no shaken copy" in err  # the unreadable files get none, with a warning, and no second failure
    code, out, err = run_vap(*args)
    assert json.loads(out)["reused"] == 48 + 96  # the copies are not written again: their bytes, their entries


@pytest.mark.parametrize("args, fragment", [
    (["train", "--data", "/nonexistent/videos"], "/nonexistent/videos: dataset path not found"),
    (["train", "--data", ".", "train.epoch=3"], "unknown key 'train.epoch'"),
    (["train", "--data", ".", "--config", "/no/such.yaml"], "/no/such.yaml: config file not found"),
    (["eval", "--checkpoint", "/no/best.pt", "--data", "."], "/no/best.pt: checkpoint not found"),
])
def test_user_errors_are_one_line(args, fragment):
    code, out, err = run_vap(*args)
    assert code == 2 and out == ""
    assert err.strip().startswith("error:") and fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_val_label_missing_from_train(tmp_path, synth_data):
    val = tmp_path / "val.csv"
    val.write_text(f"path,label\n{next((synth_data / 'wave').glob('*.mp4'))},dance\n")
    code, out, err = run_vap("train", "--data", synth_data, "--val", val, "--out", tmp_path / "r",
                             "backbone.name=tiny_cnn")
    assert code == 2 and "['dance'] not among the training classes" in err and str(val) in err


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "best.pt"
    p.write_text("hello")
    code, out, err = run_vap("eval", "--checkpoint", p, "--data", tmp_path)
    assert code == 2 and f"{p}: not a readable checkpoint" in err


@pytest.mark.slow
def test_demo_learns_its_synthetic_classes(tmp_path):
    """The first-run demo as run.sh trains it: at least 0.85 top-1 on 48 synthetic clips it never saw
    (walk_left / walk_right and wave / clap included; chance 0.17), a progress bar for each step,
    measured seconds. Measured with the demo's recipe (one head: train.ensemble=1): 0.979 for training seeds
    0-2 here (0.958, 0.958, 0.979 with five heads), and 0.896 once in a clean CI run of seed 0 (features equal
    to ~1e-6 move a head trained on 64 clips by a few clips), so the bar sits below that spread."""
    code, out, err = run_vap("demo", "--out", tmp_path / "demo")
    assert code == 0, err
    s = json.loads(out)
    assert s["test_clips"] == 48 and s["test_top1"] >= 0.85, s
    for p in [s["checkpoint"], s["metrics"], *s["plots"]]:
        assert (tmp_path / "demo").as_posix() in p and __import__("os").path.getsize(p) > 0
    for bar in ("write train", "write test", "extract efficientnet_lite0", "train:", "refit"):
        assert f"{bar}" in err, bar
    assert s["seconds"]["total"] > 0 and f"demo done in {s['seconds']['total']:.0f} s" in err


def test_a_bidirectional_model_given_to_stream_is_a_one_line_error(tmp_path, synth_test):
    from pipeline.config import load_config
    from pipeline.models.backbones import create_backbone
    from pipeline.models.checkpoint import make_checkpoint
    from pipeline.models.heads import build_head

    cfg = load_config(None, ["backbone.name=tiny_cnn", "backbone.input_size=64", "head.bidirectional=true",
                             "views.streams=[frame]"])
    bb = create_backbone("tiny_cnn", input_size=64, device="cpu")
    torch = pytest.importorskip("torch")
    torch.save(make_checkpoint("classification", cfg, ["a", "b"], bb.dim, build_head(cfg.head, bb.dim, 2),
                               bb.fingerprint), tmp_path / "bi.pt")
    video = next(synth_test.rglob("*.mp4"))
    code, out, err = run_vap("stream", "--checkpoint", tmp_path / "bi.pt", "--source", video)
    assert code == 2 and "bidirectional and cannot stream" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_checkpoint_that_would_run_code_is_refused_without_advice_to_unlock_it(tmp_path, capfd):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("code from the checkpoint ran",))

    torch.save({"format_version": 1, "head_state": Payload()}, tmp_path / "evil.pt")
    code, out, err = run_vap("eval", "--checkpoint", tmp_path / "evil.pt", "--data", tmp_path)
    assert code == 2 and "not a vap checkpoint, or an unsafe one" in err
    assert "weights_only" not in err and "trust" not in err and len(err.strip().splitlines()) == 1
    assert "code from the checkpoint ran" not in out + err + capfd.readouterr().out
