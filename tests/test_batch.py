import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline.inference.batch import SourceError, expand_sources, read_rows
from pipeline.inference.predict import Predictor

from conftest import ROOT, run_vap, truncated_video


@pytest.fixture
def folder(tmp_path, synth_test):
    d = tmp_path / "videos"
    shutil.copytree(synth_test, d)
    (d / "wave" / "corrupt.mp4").write_bytes(b"\x00\x01 not a video " * 200)
    (d / "jump" / "zero.mp4").write_bytes(b"")
    return d


def test_expand_sources(tmp_path, folder):
    files = expand_sources([str(folder)])
    assert len(files) == 18 and all(os.path.isabs(f) for f in files)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two videos\n{files[0]}\nvideos/{os.path.relpath(files[1], folder)}\n")
    assert expand_sources([str(lst)]) == files[:2]
    assert len(expand_sources([str(folder / "*" / "*_000.mp4")])) == 4
    assert expand_sources([str(tmp_path / "nope.mp4")]) == [str(tmp_path / "nope.mp4")]  # kept: an error row
    with pytest.raises(SourceError, match="glob matches no file"):
        expand_sources([str(tmp_path / "*.nope")])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_batch_rows_errors_exit_status_and_resume(tmp_path, folder, tiny_ckpt, fmt):
    out = tmp_path / f"preds.{fmt}"
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, folder, "--out", out, "--timeline",
                                "--topk", "3", "--quiet")
    assert code == 1, err  # two videos failed
    s = json.loads(stdout)
    assert s["videos"] == 18 and s["done"] == 18 and s["failed"] == 2 and s["frames"] > 0
    assert "corrupt.mp4" in err and "zero.mp4" in err
    if fmt == "jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        good = [r for r in rows if "error" not in r]
        assert len(good) == 16 and len(good[0]["topk"]) == 3 and good[0]["segments"]
        assert {"path", "label", "prob", "duration", "frames", "fps", "fingerprint"} <= set(good[0])
        bad = {os.path.basename(r["path"]): r["error"] for r in rows if "error" in r}
        assert set(bad) == {"corrupt.mp4", "zero.mp4"} and "empty file" in bad["zero.mp4"]
        pred = Predictor.from_checkpoint(tiny_ckpt)  # each row is its own video's prediction, not a neighbour's
        for r in good[::5]:
            want = pred.predict(r["path"])
            assert r["label"] == want.topk[0][0] and abs(r["prob"] - want.topk[0][1]) < 1e-3, r["path"]
            assert r["frames"] == want.frames
    else:
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 18 and list(rows[0])[:4] == ["path", "fingerprint", "label", "prob"]
        assert "top3_label" in rows[0] and "top4_label" not in rows[0]
        assert sum(bool(r["error"]) for r in rows) == 2
        assert json.loads(next(r for r in rows if not r["error"])["segments"])[0]["label"]
    # rerun with --no-retry: everything is skipped, failures are still reported
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, folder, "--out", out, "--timeline",
                                "--topk", "3", "--quiet", "--no-retry")
    s = json.loads(stdout)
    assert code == 1 and s["done"] == 0 and s["skipped"] == 18 and s["failed"] == 2 and s["retried"] == 0
    assert len(out.read_text().splitlines()) == (18 if fmt == "jsonl" else 19)
    # a plain rerun tries the two failed videos again (they fail again: two new rows that supersede)
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, folder, "--out", out, "--timeline",
                                "--topk", "3", "--quiet")
    s = json.loads(stdout)
    assert code == 1 and s["done"] == 2 and s["retried"] == 2 and s["skipped"] == 16 and s["failed"] == 2
    assert "2 of them retried after an error row" in err
    assert len(out.read_text().splitlines()) == (20 if fmt == "jsonl" else 21)
    assert len(read_rows(out)) == 18  # one row per video when read back


def test_paths_that_are_not_readable_files_are_error_rows_and_the_run_goes_on(tmp_path, synth_test, tiny_ckpt):
    """A broken symlink and a folder named like a video inside a scanned folder, and a missing path
    named on the command line: each an error row saying what it is; the good videos beside them run."""
    d = tmp_path / "videos"
    good = sorted(synth_test.glob("*/*.mp4"))[:2]
    d.mkdir()
    for g in good:
        shutil.copy(g, d / g.name)
    (d / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    (d / "folder.mp4").mkdir()
    missing = tmp_path / "typo.mp4"
    out = tmp_path / "p.jsonl"
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, d, missing, "--out", out, "--quiet")
    s = json.loads(stdout)
    assert code == 1 and s["videos"] == 5 and s["done"] == 5 and s["failed"] == 3, err
    rows = read_rows(out)
    assert sum("label" in r for r in rows.values()) == 2
    gone = d / "gone.mp4"
    assert rows[str(gone)]["error"] == f"{gone}: broken symbolic link (to {tmp_path / 'deleted.mp4'})"
    assert rows[str(d / "folder.mp4")]["error"] == f"{d / 'folder.mp4'}: is a folder, not a video file"
    assert rows[str(missing)]["error"] == f"{missing}: file not found"


def test_a_fixed_file_is_predicted_again_and_its_new_row_supersedes_the_error(tmp_path, synth_test, tiny_ckpt):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00 half an upload")
    out = tmp_path / "p.jsonl"
    code, stdout, _ = run_vap("predict", "--checkpoint", tiny_ckpt, video, "--out", out, "--quiet")
    assert code == 1 and "error" in read_rows(out)[str(video)]
    shutil.copy(next(synth_test.glob("wave/*.mp4")), video)  # the upload finished
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, video, "--out", out, "--quiet")
    assert code == 0 and json.loads(stdout)["failed"] == 0, err
    row = read_rows(out)[str(video)]
    assert "error" not in row and row["label"] and len(out.read_text().splitlines()) == 2


def test_a_truncated_video_is_predicted_with_a_warning_and_strict_makes_it_an_error(tmp_path, synth_test, tiny_ckpt):
    """frames_expected (from the container) and frames_decoded on every row; under 90% decoded gives a
    warning (the row, stderr, Predictor's result); --strict turns it into an error row."""
    cut = truncated_video(tmp_path / "cut.mp4")
    good = next(synth_test.glob("wave/*.mp4"))
    out = tmp_path / "p.jsonl"
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, cut, good, "--out", out, "--quiet")
    assert code == 0, err  # a warning is not a failure
    rows = read_rows(out)
    r, g = rows[str(cut)], rows[str(good.resolve())]
    assert r["frames_expected"] == 32 and r["frames_decoded"] < 0.9 * 32 and r["frames_decoded"] == r["frames"]
    assert r["warning"].startswith(f"only {r['frames_decoded']} of 32 expected frames decoded"), r["warning"]
    assert f"warning: {cut}: only" in err
    assert g["warning"] == "" and g["frames_expected"] == g["frames_decoded"] > 0
    assert Predictor.from_checkpoint(tiny_ckpt).predict(cut).warning == r["warning"]
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, cut, "--out", tmp_path / "s.csv", "--strict",
                                "--quiet")
    (row,) = csv.DictReader(open(tmp_path / "s.csv"))
    assert code == 1 and row["error"] == f"{cut}: {r['warning']} (--strict)" and not row["label"]
    assert {"frames_expected", "frames_decoded", "warning"} <= set(row)


def test_a_csv_written_before_the_decoding_columns_resumes(tmp_path, synth_test, tiny_ckpt):
    from pipeline.inference.batch import CSV_DECODE, csv_columns

    out = tmp_path / "old.csv"
    old = [c for c in csv_columns(4) if c not in CSV_DECODE]  # the model has 4 classes: top1..top4
    out.write_text(",".join(old) + "\n")
    one = next(synth_test.glob("jump/*.mp4"))
    code, _, err = run_vap("predict", "--checkpoint", tiny_ckpt, one, "--out", out, "--quiet", "--topk", "5")
    rows = list(csv.DictReader(out.open()))
    assert code == 0 and len(rows) == 1 and list(rows[0]) == old and rows[0]["label"], err


def test_a_decoder_that_hangs_costs_one_error_row_and_the_batch_goes_on(tmp_path, synth_test, tiny_ckpt, monkeypatch):
    """A hang is no exception (decord on a container that over-reports its frame count): the watchdog
    gives the video up after video.decode_timeout and the next videos are predicted. The hang is
    injected into the real decoder for one of three real clips; the stuck thread is released at the end."""
    import threading

    from pipeline.inference import batch
    from pipeline.inference.batch import run_batch

    clips = sorted(str(p.resolve()) for p in synth_test.glob("*/*_000.mp4"))[:3]
    release, real_open = threading.Event(), batch.open_frames

    def open_frames(path, **kw):
        if path == clips[1]:
            release.wait(120)  # stuck in "native code" until the test ends
        return real_open(path, **kw)

    monkeypatch.setattr(batch, "open_frames", open_frames)
    pred = Predictor.from_checkpoint(tiny_ckpt, overrides=["video.decode_timeout=2"])
    t0 = time.perf_counter()
    try:
        s = run_batch(pred, clips, tmp_path / "p.jsonl", progress=False)
    finally:
        release.set()
    rows = read_rows(tmp_path / "p.jsonl")
    assert s.done == 3 and s.failed == 1 and time.perf_counter() - t0 < 60
    assert rows[clips[1]]["error"] == f"{clips[1]}: decode timed out after 2 s"
    assert "label" in rows[clips[0]] and "label" in rows[clips[2]]
    want = pred.predict(clips[2])  # the next video is its own, whole
    assert rows[clips[2]]["label"] == want.topk[0][0] and rows[clips[2]]["frames"] == want.frames


def test_all_good_exits_zero_and_render_writes_playable_h264(tmp_path, synth_test, tiny_ckpt):
    out = tmp_path / "p.jsonl"
    one = next((synth_test / "jump").glob("*.mp4"))
    code, stdout, err = run_vap("predict", "--checkpoint", tiny_ckpt, one, "--out", out,
                                "--render", tmp_path / "render", "--quiet")
    assert code == 0, err
    row = json.loads(out.read_text())
    import av

    from pipeline.data.video import probe

    with av.open(row["rendered"]) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    assert probe(row["rendered"]).num_frames == probe(one).num_frames
    assert not [p for p in (tmp_path / "render").iterdir() if p.name.startswith(".")]  # no temp files left


def test_kill_9_then_resume(tmp_path, folder, tiny_ckpt):
    for bad in ("wave/corrupt.mp4", "jump/zero.mp4"):
        (folder / bad).unlink()
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "pipeline", "predict", "--checkpoint", str(tiny_ckpt), str(folder),
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(out, "a") as f:
        f.write('{"path": "torn')  # as if killed in the middle of a write
    n_before = len([x for x in out.read_text().splitlines() if x.endswith("}")])
    assert 3 <= n_before < 16
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["skipped"] == n_before and s["done"] == 16 - n_before
    rows = [json.loads(x) for x in out.read_text().splitlines()]  # every line parses: nothing corrupt
    assert len({r["path"] for r in rows}) == 16 == len(rows)
