import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.config import VideoConfig, ViewsConfig
from pipeline.data.video import load_frames
from pipeline.models.backbones import create_backbone
from pipeline.models.cache import FeatureCache, extract, extract_versions

from conftest import ROOT, counter_frames, write_video


@pytest.fixture
def videos(tmp_path):
    paths = []
    for i in range(4):
        paths.append(str(write_video(tmp_path / "v" / f"c{i}.avi", counter_frames(20 + 5 * i))))
    return paths


def test_extract_then_reuse_and_load(tmp_path, videos):
    bb = create_backbone("tiny_cnn")
    cache = FeatureCache(tmp_path / "cache")
    vcfg = VideoConfig(fps=10)
    r1 = extract(videos, bb, vcfg, cache, progress=False)
    assert r1.extracted == 4 and r1.reused == 0 and not r1.failures
    feats, ts, meta = cache.load(r1.keys[videos[0]][0])
    assert feats.dtype == np.float32 and feats.shape == (8, bb.dim) and len(ts) == 8
    assert np.allclose(feats, bb.encode(load_frames(videos[0], fps=10)[0]),
                       atol=1e-2)  # stored as float16
    assert meta["fingerprint"] == bb.fingerprint
    r2 = extract(videos, bb, vcfg, cache, progress=False)
    assert r2.extracted == 0 and r2.reused == 4 and r2.keys == r1.keys


def test_changed_video_backbone_or_sampling_never_reuses(tmp_path, videos):
    cache = FeatureCache(tmp_path / "cache")
    bb = create_backbone("tiny_cnn")
    vcfg = VideoConfig(fps=10)
    k = cache.key(videos[0], bb.fingerprint, vcfg)
    assert k == cache.key(videos[0], bb.fingerprint, VideoConfig(fps=10))
    assert k != cache.key(videos[0], bb.fingerprint, VideoConfig(fps=5))
    assert k != cache.key(videos[0], create_backbone("tiny_cnn", input_size=96).fingerprint, vcfg)
    write_video(videos[0], counter_frames(20)[::-1])  # same name and length, other content
    os.utime(videos[0], ns=(1, 1))
    assert cache.key(videos[0], bb.fingerprint, vcfg) != k


def test_bad_videos_are_recorded_not_fatal(tmp_path, videos):
    bad = tmp_path / "v" / "broken.avi"
    bad.write_bytes(b"\x00" * 5000)
    empty = tmp_path / "v" / "empty.mp4"
    empty.write_bytes(b"")
    res = extract([videos[0], str(bad), str(empty), videos[1]], create_backbone("tiny_cnn"), VideoConfig(),
                  FeatureCache(tmp_path / "cache"), progress=False, failures_file=tmp_path / "failures.txt")
    assert res.extracted == 2 and set(res.failures) == {str(bad), str(empty)}
    text = (tmp_path / "failures.txt").read_text()
    assert "broken.avi" in text and "empty file" in text


def test_views_and_their_mirror_from_one_decode_equal_two_extractions(tmp_path, videos, monkeypatch):
    """Flip augmentation's mirrored features come from the same decode as the plain ones (extract_versions):
    each video is decoded once, the entries are the very ones two separate extractions write (the same keys,
    the same numbers), a video cached plain is decoded again only for what it lacks, and a bad file is a failure
    in both results."""
    import pipeline.models.cache as cache_mod

    bb, vcfg, views = create_backbone("tiny_cnn"), VideoConfig(fps=10), ViewsConfig(streams=["frame", "crop", "diff"])
    bad = tmp_path / "v" / "broken.avi"
    bad.write_bytes(b"\x00" * 5000)
    two = FeatureCache(tmp_path / "two")
    plain = extract(videos, bb, vcfg, two, progress=False, views=views)
    mirrored = extract(videos[:3], bb, vcfg, two, progress=False, flip=True, views=views)

    decoded = []
    real = cache_mod.iter_frames
    monkeypatch.setattr(cache_mod, "iter_frames", lambda path, **kw: decoded.append(path) or real(path, **kw))
    one = FeatureCache(tmp_path / "one")
    both = extract_versions({False: videos + [str(bad)], True: videos[:3] + [str(bad)]}, bb, vcfg, one,
                            progress=False, views=views)
    assert sorted(decoded) == sorted(videos + [str(bad)])  # once each, the bad file included
    assert both[False].keys == plain.keys and both[True].keys == mirrored.keys
    assert (both[False].extracted, both[True].extracted) == (4, 3)
    assert set(both[False].failures) == set(both[True].failures) == {str(bad)}
    for res in (plain, mirrored):
        for keys in res.keys.values():
            for k in keys:
                a, b = two.load(k), one.load(k)
                assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # the mirror differs from the views as they are (the bar moves the other way)
    assert not np.array_equal(one.load_streams(plain.keys[videos[0]])[0],
                              one.load_streams(mirrored.keys[videos[0]])[0])

    decoded.clear()  # the plain entries cached: only the mirrored ones of the fourth video are missing
    again = extract_versions({False: videos, True: videos}, bb, vcfg, one, progress=False, views=views)
    assert decoded == [videos[3]]
    assert (again[False].reused, again[True].reused, again[True].extracted) == (4, 3, 1)


@pytest.mark.slow  # spawns processes (the quick tier stays under 3 minutes)
def test_extraction_resumes_after_kill_9(tmp_path):
    """Kill `vap extract` halfway with SIGKILL: complete entries survive, the rerun encodes only the rest."""
    from pipeline.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "d", 6, actions=("wave", "jump"), seed=0)
    cache = tmp_path / "cache"
    env = dict(os.environ, VAP_CACHE=str(cache))
    # one stream, so that entries count videos as they are and mirrored (flip_aug=auto: wave, jump), each video's
    # two written after its one decode (test_views covers videos with some streams cached)
    cmd = [sys.executable, "-m", "pipeline", "extract", "--data", str(data), "--quiet", "backbone.input_size=224",
           "views.streams=[frame]", "train.copies=0"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.rglob("*.npz"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.rglob("*.npz")))
    assert 2 <= done < 24, "the kill should land halfway"
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    import json

    summary = json.loads(out.stdout)
    plain, mirrored = summary, summary["mirrored"]
    assert plain["reused"] + mirrored["reused"] == done and summary["failed"] == 0
    assert plain["extracted"] + mirrored["extracted"] == 24 - done and len(list(cache.rglob("*.npz"))) == 24
    for p in cache.rglob("*.npz"):  # every entry is complete and loads
        with np.load(p) as z:
            assert len(z["features"]) == len(z["timestamps"]) > 0
