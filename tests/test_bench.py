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
