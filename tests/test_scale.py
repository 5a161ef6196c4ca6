"""Scale-out on real engines: `vap predict/extract --engine ray` through a real local Ray instance (2 CPUs,
a small object store, shut down after the command) and through a running one-node cluster that the
commands join (`ray start --head`, stopped after the module), and `vap train --nproc 2` through real
torchrun processes (gloo). No mocks of Ray or of the process group: the rows, the cache and the run directory are
checked as a user would read them."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.inference.batch import read_rows

from conftest import ROOT, TINY, run_vap


def _need_ray():
    """Ray is the `ray` extra; CI installs it, so there a missing Ray fails instead of skipping."""
    if os.environ.get("CI"):
        import ray  # noqa: F401
    else:
        pytest.importorskip("ray", reason='Ray not installed (pip install "vap[ray]")')


@pytest.fixture(scope="module")
def ray_cluster():
    """A running one-node Ray cluster started as README "Scale out" tells a user to (`ray start --head`),
    bounded to 2 CPUs and a small object store; the commands join it with --address. Stopped at the end.

    With token authentication, as Ray >= 2.59 starts one on any machine that holds a token (~/.ray/auth_token,
    which any local ray.init() writes, as this module's local-engine tests do): the commands are not told
    RAY_AUTH_MODE, as a user's shell would not be, and must join all the same (pipeline.cluster)."""
    _need_ray()
    import secrets
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = Path.home() / ".ray" / "auth_token"
    if not token.is_file():  # what Ray's own first local ray.init() would write
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text(secrets.token_hex(32))
    ray = str(Path(sys.executable).with_name("ray"))
    p = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                        "--object-store-memory=200000000", "--include-dashboard=false", "--disable-usage-stats"],
                       capture_output=True, text=True, timeout=180, env=dict(os.environ, RAY_AUTH_MODE="token"))
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=180)


@pytest.fixture
def folder(tmp_path, synth_test):
    d = tmp_path / "videos"
    shutil.copytree(synth_test, d)
    (d / "wave" / "corrupt.mp4").write_bytes(b"\x00\x01 not a video " * 200)
    return d


def _comparable(row: dict) -> dict:
    """A row less what differs between two runs of the same model on the same file: timings, and the
    probabilities, compared separately within float tolerance (Ray's workers run 1 thread each)."""
    r = {k: v for k, v in row.items() if k not in ("timing", "prob", "topk")}
    r["topk_labels"] = [t["label"] for t in row.get("topk", [])]
    return r


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]  # every line parses: nothing torn


@pytest.mark.slow  # spawns processes (the quick tier stays under 3 minutes)
def test_ray_predict_rows_equal_the_local_engine_and_resume(tmp_path, folder, tiny_ckpt):
    _need_ray()
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    code, out, err = run_vap("predict", "--checkpoint", tiny_ckpt, folder, "--out", local, "--timeline", "--quiet")
    assert code == 1, err  # the corrupt file: an error row, exit 1
    code, out, err = run_vap("predict", "--engine", "ray", "--workers", "2", "--checkpoint", tiny_ckpt, folder,
                             "--out", ray_out, "--timeline", "--quiet")
    assert code == 1, err
    s = json.loads(out)
    assert s["engine"] == "ray" and s["workers"] == 2 and s["done"] == 17 and s["failed"] == 1
    a, b = read_rows(local), read_rows(ray_out)
    assert set(a) == set(b) and len(a) == 17 and len(_jsonl(ray_out)) == 17  # one row per video, no repeat
    for path in a:
        assert _comparable(a[path]) == _comparable(b[path]), path  # labels, segments, errors, frames
        if "error" not in a[path]:
            pa = np.array([t["prob"] for t in a[path]["topk"]])
            pb = np.array([t["prob"] for t in b[path]["topk"]])
            np.testing.assert_allclose(pa, pb, atol=2e-3)
    assert "corrupt.mp4" in b[str(folder / "wave" / "corrupt.mp4")]["error"]
    # a rerun skips every video before any work is scheduled: no Ray instance is even started
    t0 = time.perf_counter()
    code, out, err = run_vap("predict", "--engine", "ray", "--no-retry", "--checkpoint", tiny_ckpt, folder,
                             "--out", ray_out, "--quiet")
    s = json.loads(out)
    assert s["skipped"] == 17 and s["done"] == 0 and len(_jsonl(ray_out)) == 17
    assert time.perf_counter() - t0 < 20


def test_ray_engine_without_ray_says_how_to_install(tmp_path, tiny_ckpt, synth_test, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    code, out, err = run_vap("predict", "--engine", "ray", "--checkpoint", tiny_ckpt, synth_test,
                             "--out", tmp_path / "p.jsonl", "--quiet")
    assert code == 2 and 'pip install "vap[ray]"' in err and "Traceback" not in err
    code, out, err = run_vap("extract", "--engine", "ray", "--data", synth_test, "--quiet", *TINY)
    assert code == 2 and 'pip install "vap[ray]"' in err
    code, out, err = run_vap("predict", "--workers", "2", "--checkpoint", tiny_ckpt, synth_test,
                             "--out", tmp_path / "p.jsonl", "--quiet")
    assert code == 2 and "--engine ray" in err  # Ray settings without the Ray engine: said, not ignored


def _cache_entries(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in cache.rglob("*.npz")}


@pytest.mark.slow
def test_ray_extract_fills_the_cache_safely_under_a_race_and_train_reads_it(tmp_path, synth_data, ray_cluster):
    """Two extractions race on one cache (a pool of 2 on a running Ray cluster and a local run at the same
    time): every entry is complete and equal to a clean extraction's, no temporary file is left; vap train
    then encodes nothing."""
    cache, clean = tmp_path / "cache", tmp_path / "clean"
    # flip_aug=true: the mirrored entries that training will read are filled too; and one rewritten copy of each
    # clip (train.copies=1), which both extractions write: the first file written is the one both read
    args = ["--data", str(synth_data), "--quiet", *TINY, "train.flip_aug=true", "train.copies=1"]
    local = subprocess.Popen([sys.executable, "-m", "pipeline", "extract", "--cache", str(cache), *args],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, out, err = run_vap("extract", "--engine", "ray", "--address", ray_cluster, "--workers", "2",
                             "--cache", cache, *args)
    lout, lerr = local.communicate(timeout=600)
    assert code == 0 and local.returncode == 0, err + lerr
    s, ls = json.loads(out), json.loads(lout)
    assert s["engine"] == "ray" and s["videos"] == 48 and s["copies"] == 48 and s["failed"] == 0
    assert s["mirrored"]["videos"] == 96  # the clips and their copies
    assert s["extracted"] + s["reused"] == 96 and ls["extracted"] + ls["reused"] == 96
    # the clean extraction reads the same copies (they are written once, under the cache folder)
    shutil.copytree(cache / "copies", clean / "copies")
    code, out, err = run_vap("extract", "--cache", clean, *args)
    assert code == 0, err
    raced, ref = _cache_entries(cache), _cache_entries(clean)
    streams = len(load_config().views.streams)  # the default views: crop, diff, mhi
    assert len(ref) == 96 * streams * 2  # 96 videos x each stream x (as they are, mirrored)
    assert raced.keys() == ref.keys()
    for name in ref:  # every entry whole and loadable (the same features; bytes may differ by timing meta)
        with np.load(cache / name[:2] / name) as z, np.load(clean / name[:2] / name) as r:
            np.testing.assert_allclose(z["features"].astype(np.float32), r["features"].astype(np.float32),
                                       atol=2e-2)
    # no temp files: the entries and the 48 copies, no half-written or second copy
    assert not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".npz") and p.parent.name != "copies"]
    assert len(list((cache / "copies").iterdir())) == 48
    # a rerun on Ray has nothing to do and starts nothing
    code, out, err = run_vap("extract", "--engine", "ray", "--cache", cache, *args)
    s = json.loads(out)
    assert code == 0 and s["reused"] == 96 and s["extracted"] == 0 and s["mirrored"]["reused"] == 96
    before = set(raced)
    code, out, err = run_vap("train", "--data", synth_data, "--out", tmp_path / "run", "--cache", cache, "--quiet",
                             *TINY, "train.flip_aug=true", "train.copies=1", "train.epochs=2", "train.patience=0")
    assert code == 0, err
    assert set(_cache_entries(cache)) == before  # training read what the pool wrote, encoded nothing new


def _worker_pids(name: str) -> list[int]:
    """Processes of Ray actors whose title names `name` (Ray titles them ray::MapWorker(MapBatches(Name)))."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if name in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _predict_ray(ckpt, folder, out, *extra):
    """`vap predict --engine ray` in a process of its own (extra: e.g. --address)."""
    cmd = [sys.executable, "-m", "pipeline", "predict", "--engine", "ray", "--workers", "2", "--checkpoint",
           str(ckpt), str(folder), "--out", str(out), "--quiet", *extra]
    return cmd, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # its own process group: Ray's processes with it


def _rows_in(out: Path) -> int:
    return len([x for x in out.read_text().splitlines() if x.endswith("}")]) if out.exists() else 0


@pytest.mark.slow
def test_ray_worker_killed_mid_run_is_restarted_and_every_row_written(tmp_path, synth_test, trained_ckpt,
                                                                     ray_cluster):
    out = tmp_path / "p.jsonl"
    cmd, proc = _predict_ray(trained_ckpt, synth_test, out, "--address", ray_cluster)
    try:
        deadline, pids = time.time() + 300, []
        while time.time() < deadline and not pids and proc.poll() is None:
            pids = [p for p in _worker_pids("PredictWorker") if p != proc.pid]
            time.sleep(0.05)
        assert pids, "no Ray worker appeared"
        time.sleep(0.5)  # let it load the model and take a video
        written = _rows_in(out)
        os.kill(pids[0], signal.SIGKILL)
        assert written < 16  # killed mid-run
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    rows = _jsonl(out)
    assert len(rows) == 16 == len({r["path"] for r in rows}) and not any("error" in r for r in rows)
    assert json.loads(stdout)["done"] == 16, stdout


@pytest.mark.slow
def test_ray_driver_killed_then_rerun_finishes_without_duplicates(tmp_path, synth_test, trained_ckpt, ray_cluster):
    """The driver of a job on a running cluster dies (kill -9); the same command again finishes the job."""
    out = tmp_path / "p.jsonl"
    cmd, proc = _predict_ray(trained_ckpt, synth_test, out, "--address", ray_cluster)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and _rows_in(out) < 2 and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a crash would
        proc.wait()
    finally:
        try:  # anything of its own it left behind (the cluster's processes are not in its group)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    n_before = _rows_in(out)
    assert 2 <= n_before < 16
    with open(out, "a") as f:
        f.write('{"path": "torn')  # as if killed in the middle of a write
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["skipped"] == n_before and s["done"] == 16 - n_before
    rows = _jsonl(out)  # every line parses: the torn one was cut
    assert len(rows) == 16 == len({r["path"] for r in rows})


@pytest.mark.slow  # spawns processes (the quick tier stays under 3 minutes)
def test_ddp_two_processes_write_one_run_directory_and_resume(tmp_path, synth_test):
    """vap train --nproc 2: real torchrun processes (gloo); rank 0 alone writes the run directory, the
    other's scratch folder is gone; --resume continues from last.pt in both processes."""
    run = tmp_path / "run"
    env = dict(os.environ, TMPDIR=str(tmp_path), VAP_CACHE=str(tmp_path / "cache"))
    args = [sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--out", str(run), "--quiet"]
    p = subprocess.run([*args, "--data", str(synth_test), *TINY, "train.epochs=3", "train.patience=0"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)  # rank 0's report, printed once
    assert m["processes"] == 2 and m["epochs_run"] == 3
    assert "distributed: 2 processes (gloo)" in (run / "train.log").read_text()
    assert sorted(x.name for x in run.iterdir()) == sorted(
        ["best.pt", "last.pt", "config.yaml", "split.csv", "log.csv", "train.log", "metrics.json", "curves.png",
         "confusion_val.png"])
    assert not list(tmp_path.glob("vap-train-rank*"))  # the other rank's scratch folder is removed
    p = subprocess.run([*args, "--resume", "train.epochs=5"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["epochs_run"] == 5
    assert [int(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()[1:]] == [1, 2, 3, 4, 5]
    assert "resumed from epoch 3" in (run / "train.log").read_text()
    # torchrun needs the run directory named: each process must write (or not) the same one
    code, out, err = run_vap("train", "--data", synth_test, "--quiet", env={"WORLD_SIZE": "2"})
    assert code == 2 and "--out" in err
    # a bad config or data path is one line before any process starts, not N tracebacks from torchrun
    code, out, err = run_vap("train", "--nproc", "2", "--data", synth_test, "train.finetune_backbone=true")
    assert code == 2 and "set views.motion_size=0" in err and "launching" not in err
    code, out, err = run_vap("train", "--nproc", "2", "--data", tmp_path / "nope")
    assert code == 2 and "nope: no such file or folder" in err


@pytest.mark.slow  # spawns processes (the quick tier stays under 3 minutes)
def test_ddp_next_event_training_runs_in_two_processes(tmp_path):
    """The next-event task under torchrun too: every process draws the same windows and trains on its share."""
    code, out, err = run_vap("synth", "--sequences", "4", "--seconds", "8", "--out", tmp_path / "seq")
    assert code == 0, err
    run = tmp_path / "run"
    env = dict(os.environ, TMPDIR=str(tmp_path), VAP_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--data",
                        str(tmp_path / "seq" / "annotations.csv"), "--out", str(run), "--quiet", *TINY,
                        "train.epochs=2", "data.val_fraction=0.25"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert m["task"] == "next_event" and m["processes"] == 2 and m["epochs_run"] == 2
    assert (run / "best.pt").is_file() and len((run / "log.csv").read_text().splitlines()) == 3
    assert not list(tmp_path.glob("vap-train-rank*"))


@pytest.mark.slow
def test_ray_per_person_rows_equal_the_local_engine(tmp_path, tiny_ckpt):
    """--per-person on the Ray engine: the workers run the same per-person code, the driver writes each
    video's rows together; the rows equal the local engine's (ids, boxes, labels)."""
    _need_ray()
    from pipeline.data.people import make_people_videos

    videos = make_people_videos(tmp_path / "people", videos=2, seconds=4.0, seed=5)
    rows = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        code, stdout, err = run_vap("predict", "--engine", engine, *(["--workers", "2"] if engine == "ray" else []),
                                    "--checkpoint", tiny_ckpt, "--per-person", "--quiet", "--out", out, videos)
        assert code == 0, err
        rows[engine] = {(r["path"], r["track_id"]): r for r in _jsonl(out)}
    assert rows["local"].keys() == rows["ray"].keys() and len(rows["local"]) >= 4
    for k, a in rows["local"].items():
        b = rows["ray"][k]
        assert (a["label"], a["boxes"], a["tracks"], a["start"], a["end"]) == \
            (b["label"], b["boxes"], b["tracks"], b["start"], b["end"]), k


def test_ray_workers_keep_opencv_to_their_threads(tiny_ckpt):
    """A Ray worker runs the views' OpenCV calls (warps, the camera fit) at its own thread count, as it runs the
    backbone: at OpenCV's default (every core) two workers on 2 cores ran at 0.87 of the local engine instead of
    0.95 (docs/scale.md). The actors' classes, built here in this process as Ray builds them in a worker."""
    import cv2
    import torch

    from pipeline.config import load_config
    from pipeline.inference.ray_batch import PredictWorker
    from pipeline.models.ray_extract import ExtractWorker

    before = cv2.getNumThreads(), torch.get_num_threads()  # the constructors set both: given back after
    try:
        cv2.setNumThreads(2)
        ExtractWorker(load_config(None, TINY), threads=1)
        assert cv2.getNumThreads() == 1
        cv2.setNumThreads(2)
        PredictWorker(str(tiny_ckpt), "cpu", 2.0, 1.0, 3, [], False, None, False, threads=1)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])
