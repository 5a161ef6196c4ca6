"""The benchmark scripts run and print what the README's tables are made of (quick mode)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_run_all_quick(tmp_path):
    pytest.importorskip("onnxruntime")
    env = dict(os.environ, VAP_BENCH=str(tmp_path / "bench"), VAP_HOME=str(tmp_path / "home"))
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--only",
                        "backbone,streaming,training", "--out", str(tmp_path / "res")], capture_output=True, text=True,
                       env=env, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "res.json").read_text())
    assert [r["bench"] for r in res] == ["backbone", "streaming", "training"]
    assert all("error" not in r for r in res), res
    assert res[0]["machine"]["cpu"] and isinstance(res[0]["machine"]["flags"], list)  # every report names its CPU
    for row in res[0]["rows"]:  # every path this CPU has ran; fp32 ones match the reference; the fastest is correct
        assert row["paths"] and all("error" not in p for p in row["paths"]), row
        assert all(p["ok"] for p in row["paths"] if p["precision"] == "fp32"), row
        assert any(p["ok"] and p["frames_per_s"] == row["fastest_fps"] for p in row["paths"]), row
    stream = {r["runtime"]: r for r in res[1]["rows"]}
    assert set(stream) == {"torch-fp32", "onnxruntime-fp32"}
    assert all(0 < r["push_ms_p50"] < 1000 for r in stream.values())
    train = {r["variant"]: r for r in res[2]["rows"]}
    assert len(train) == 2 and all(r["seconds"] > 0 for r in train.values())
    md = (tmp_path / "res.md").read_text()
    assert "### streaming" in md and "| padded + masked (ours) |" in md
    assert md.startswith("Machine: ") and "CPU flags: " in md  # the CPU that made the numbers, first


def test_accuracy_folds_rewrites_test_clips_as_other_files(tmp_path):
    """bench/accuracy_folds.py --files: each test clip becomes real H.264 files of the same frames, at 25 fps,
    at half the size and on a frame 1.5x its size (centred, black around), listed in one test CSV per variant."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from accuracy_folds import FILE_VARIANTS, write_variants

    from pipeline.data.video import load_frames, probe

    from conftest import write_video

    clip = tmp_path / "punch" / "1_1_4.avi"
    write_video(clip, np.full((30, 48, 64, 3), 180, np.uint8), fps=30)  # 1 s at 30 fps, 64x48
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(f"path,label\n{clip},punch\n")
    csvs = write_variants(test_csv, tmp_path / "files")
    assert set(csvs) == set(FILE_VARIANTS)
    info = {}
    for v, csv in csvs.items():
        (row,) = csv.read_text().splitlines()[1:]
        path, label = row.split(",")
        assert label == "punch" and path.endswith(f"/{v}/1_1_4.mp4")
        info[v] = probe(path)
        assert info[v].duration == pytest.approx(1.0, abs=0.1)
    assert (info["h264"].width, info["h264"].height, round(info["h264"].fps)) == (64, 48, 30)
    assert round(info["fps25"].fps) == 25 and (info["fps25"].width, info["fps25"].height) == (64, 48)
    assert (info["half"].width, info["half"].height) == (32, 24)
    assert (info["canvas"].width, info["canvas"].height) == (96, 72)
    f, _ = load_frames(info["canvas"].path, sampling="all")
    assert abs(float(f[:, 20:52, 24:72].mean()) - 180) < 8 and float(f[:, :, :12].mean()) < 8  # centred, unscaled
    mtime = os.stat(info["half"].path).st_mtime_ns
    write_variants(test_csv, tmp_path / "files")  # a rerun keeps what is written
    assert os.stat(info["half"].path).st_mtime_ns == mtime

    framed = np.zeros((10, 48, 64, 3), np.uint8)
    framed[:, :2], framed[:, -2:], framed[:, :, :2], framed[:, :, -2:] = 200, 200, 200, 200  # a 2-px bright frame
    write_video(clip, framed, fps=30)
    (zoom_csv,) = write_variants(test_csv, tmp_path / "zoom", ("zoom",)).values()
    f, _ = load_frames(zoom_csv.read_text().splitlines()[1].split(",")[0], sampling="all")
    assert f.shape[1:3] == (48, 64) and float(f[:, :, :2].mean()) < 40  # the diagnostic zoom (1.12x) cuts it off

    checks = np.kron((np.indices((6, 8)).sum(0) % 2 * 200).astype(np.uint8), np.ones((8, 8), np.uint8))  # 48 x 64
    write_video(clip, np.repeat(np.repeat(checks[None, ..., None], 10, 0), 3, 3), fps=30)  # a still picture
    shaken = write_variants(test_csv, tmp_path / "jitter", ("jitter", "h264"))
    moves = {}
    for v, csv in shaken.items():
        f, _ = load_frames(csv.read_text().splitlines()[1].split(",")[0], sampling="all")
        moves[v] = float(np.abs(np.diff(f.astype(np.int16), axis=0)).mean())
    assert moves["jitter"] > 10 > 3 > moves["h264"], moves  # the diagnostic jitter shakes a still picture


@pytest.mark.slow
def test_camera_fit_bench_scores_fits_against_the_known_sway(capsys):
    """bench/camera_fit.py on two real clips: every setting is scored against the hand-held camera's known path,
    and the views' own fit finds it (few moving steps refused, corners within a fraction of a pixel)."""
    from conftest import UT1

    if not UT1.is_dir():
        pytest.skip(f"{UT1} not present: real-data bench skipped")
    sys.path.insert(0, str(ROOT / "bench"))
    from camera_fit import SETTINGS, main

    out = main(["--every-ut", "30", "--every-weizmann", "0"])
    assert json.loads(capsys.readouterr().out) == out and out["clips"] == 2
    assert set(out["settings"]) == set(SETTINGS)
    default = out["settings"]["default"]
    assert default["moving_steps"] > 40 and default["missed"] <= 0.05 * default["moving_steps"], default
    assert default["p90_corner_error_px"] < 0.6 and default["region_share_ratio"] < 2, default
    assert all(s["ms_per_fit"] > 0 for s in out["settings"].values())
