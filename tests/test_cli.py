import json

import pytest

from conftest import run_vap


def test_help_for_every_subcommand():
    for sub in ["", "train", "eval", "extract", "synth", "demo", "backbones"]:
        code, out, err = run_vap(*([sub] if sub else []), "--help")
        assert code == 0 and "usage: vap" in out


def test_train_then_eval_through_the_cli(tmp_path, synth_data, synth_test):
    run = tmp_path / "run"
    code, out, err = run_vap("train", "--data", synth_data, "--out", run, "--quiet", "backbone.input_size=128",
                             "video.fps=8", "train.epochs=30")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["checkpoint"] == str(run / "best.pt") and 0 <= metrics["val_top1"] <= 1
    code, out, err = run_vap("eval", "--checkpoint", run / "best.pt", "--data", synth_test, "--quiet")
    assert code == 0, err
    rep = json.loads(out)  # stdout is pure JSON; progress went to stderr
    for key in ["top1", "top5", "mean_class_accuracy", "per_class_accuracy", "confusion_matrix", "num_clips"]:
        assert key in rep
    assert rep["num_clips"] == 16 and rep["top1"] >= 0.5 and rep["top5"] == 1.0
    assert sum(map(sum, rep["confusion_matrix"])) == 16
    assert (run / "confusion_eval.png").stat().st_size > 1000
    assert (run / "per_class_eval.csv").read_text().startswith("class,accuracy,support")


def test_extract_reports_bad_videos_and_resumes(tmp_path, synth_data):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "wave" / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (data / "jump" / "zero.avi").write_bytes(b"")
    args = ["extract", "--data", data, "--quiet", "backbone.name=tiny_cnn", "backbone.input_size=64"]
    code, out, err = run_vap(*args)
    s = json.loads(out)
    assert code == 1 and s["videos"] == 50 and s["extracted"] == 48 and s["failed"] == 2
    assert "corrupt.mp4" in err and "zero.avi: empty file" in err
    code, out, err = run_vap(*args)
    assert json.loads(out)["reused"] == 48


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


def test_demo_quick_end_to_end(tmp_path):
    code, out, err = run_vap("demo", "--quick", "--quiet", "--out", tmp_path / "demo")
    assert code == 0, err
    s = json.loads(out)
    assert s["test_clips"] == 18 and 0 <= s["test_top1"] <= 1
    for p in [s["checkpoint"], s["metrics"], *s["plots"]]:
        assert (tmp_path / "demo").as_posix() in p and __import__("os").path.getsize(p) > 0
