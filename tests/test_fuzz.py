"""Damaged media (issue #16, item 8): bench/fuzz.py's seeded mutants of real clips in several
containers, through the real `vap predict` in a process of its own."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402


def test_mutations_are_seeded_and_damage_the_file(tmp_path):
    seeds = fuzz.make_seeds(tmp_path / "seeds", seed=3)
    assert set(seeds) >= {"mp4", "avi-mjpeg", "avi-mpeg4", "mkv"}  # webm too where PyAV's FFmpeg has VP9
    a = fuzz.make_mutants(tmp_path / "a", 12, seed=3, seeds=seeds)
    b = fuzz.make_mutants(tmp_path / "b", 12, seed=3, seeds=seeds)
    assert [m["mutations"] for m in a] == [m["mutations"] for m in b]
    assert all(open(x["path"], "rb").read() == open(y["path"], "rb").read() for x, y in zip(a, b))
    assert all(m["damaged"] for m in a) and {m["container"] for m in a} == set(seeds)


@pytest.mark.slow
def test_every_fuzzed_video_ends_as_a_row_and_the_process_survives(tmp_path, tiny_ckpt):
    res = fuzz.run(40, seed=1, checkpoint=str(tiny_ckpt), out=tmp_path, timeout_s=20.0)
    assert not res["crashed"] and res["exit_status"] in (0, 1), res["stderr_tail"]
    assert not res["without_row"] and res["mutants"] == 40
    assert res["predicted"] + res["predicted_with_warning"] + res["error_rows"] == 40, res
    assert res["seconds"] < 40 * res["decode_timeout_s"] and res["peak_rss_mb"] < 3000, res
