"""Capability probes and the switches that hide them (VAP_CPU_FEATURES=generic, VAP_DECORD=0), so that
the branches an AVX2-only or non-x86 machine takes run on every machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline import capabilities
from pipeline.data.video import decord_available, load_frames, open_video
from pipeline.models.backbones import BackboneError, create_backbone
from pipeline.models.runtime import Runtime, candidates, pick_fastest

from conftest import ROOT, counter_frames, write_video


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_runtime_request_errors_do_not_depend_on_the_cpu(monkeypatch, mode):
    """A request that can never run is refused with the same message on every machine (#19: on an
    AVX2-only CPU the bf16 check used to answer first)."""
    monkeypatch.setenv("VAP_CPU_FEATURES", mode)
    bb = create_backbone("tiny_cnn", device="cpu")
    with pytest.raises(BackboneError, match="onnxruntime runs fp32"):
        Runtime(bb, "onnxruntime", "bf16")
    with pytest.raises(BackboneError, match="onnxruntime runs fp32"):
        Runtime(bb, "onnxruntime", "fp16")
    with pytest.raises(BackboneError, match="must be one of"):
        Runtime(bb, "tensorrt")
    with pytest.raises(BackboneError, match="fp16 needs a CUDA device"):
        Runtime(bb, "torch", "fp16")


def test_generic_cpu_hides_bf16(monkeypatch):
    monkeypatch.setenv("VAP_CPU_FEATURES", "generic")
    assert not capabilities.bf16_supported()
    bb = create_backbone("tiny_cnn", device="cpu")
    assert all(prec != "bf16" for _, prec, _ in candidates(bb))
    with pytest.raises(BackboneError, match="needs a CPU with native bf16"):
        Runtime(bb, "torch", "bf16")


def test_auto_on_a_cpu_without_bf16_keeps_a_correct_fp32_path(tmp_path, monkeypatch):
    """runtime=auto precision=auto on an AVX2-only CPU: no bf16 path competes (fp32 eager, channels-last,
    ONNX Runtime fp32 or int8 do), measured apart from the native CPU's choice (its own key in runtime.json)."""
    monkeypatch.setenv("VAP_HOME", str(tmp_path))
    bb = create_backbone("tiny_cnn", input_size=64, device="cpu", batch_size=8)
    monkeypatch.setenv("VAP_CPU_FEATURES", "generic")
    choice = pick_fastest(bb)
    assert choice[1] in ("fp32", "int8")
    monkeypatch.setenv("VAP_CPU_FEATURES", "native")
    pick_fastest(bb)
    saved = json.loads((tmp_path / "runtime.json").read_text())
    assert len(saved) == 2 and sum("|generic|" in k for k in saved) == 1
    (generic,) = [v for k, v in saved.items() if "|generic|" in k]
    assert generic["choice"] == list(choice)
    assert {r["choice"][1] for r in generic["measured"]} == {"fp32", "int8"}


@pytest.mark.skipif("avx2" not in capabilities.cpu_flags(), reason="needs an x86 CPU with AVX2")
def test_generic_cpu_limits_pytorch_kernels_to_avx2():
    """The switch reaches PyTorch itself: importing pipeline first sets ATEN_CPU_CAPABILITY and
    ONEDNN_MAX_CPU_ISA, so the kernels an AVX2-only CPU runs are the ones that run."""
    code = ("import pipeline, torch; x = torch.randn(64, 64); (x @ x).sum().item(); "
            "print(torch.backends.cpu.get_cpu_capability())")
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(env, VAP_CPU_FEATURES="generic")).stdout.split()
    assert out[-1] == "AVX2"


def test_unknown_cpu_feature_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("VAP_CPU_FEATURES", "avx9000")
    with pytest.raises(ValueError, match="VAP_CPU_FEATURES='avx9000': use one of native, generic"):
        capabilities.generic_cpu()


def test_vap_decord_0_reads_with_opencv_as_machines_without_decord(tmp_path, monkeypatch):
    p = write_video(tmp_path / "c.avi", counter_frames(20))
    monkeypatch.setenv("VAP_DECORD", "0")
    assert not decord_available()
    assert open_video(p).name == "opencv"
    frames, ts = load_frames(p, sampling="all")  # decoder=auto
    assert frames.shape == (20, 48, 64, 3) and np.allclose(ts, np.arange(20) / 25.0)


def test_describe_names_the_cpu_and_its_flags():
    d = capabilities.describe()
    assert d["cpu"] and d["cores"] >= 1 and isinstance(d["flags"], list)
    assert d["cpu_features"] in capabilities.CPU_FEATURE_MODES
    assert set(d["flags"]) <= set(capabilities._REPORTED_FLAGS)
