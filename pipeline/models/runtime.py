"""How a backbone's encode() runs: a Runtime wraps a plain Backbone (which knows nothing of this)
and runs it as PyTorch eager (fp32, bf16 / fp16 autocast, channels-last) or on ONNX Runtime; `auto`
measures the candidates once on this machine and keeps the fastest one whose features match the
fp32 reference (cosine similarity > 0.99).

The choice is cached in ~/.cache/vap/runtime.json per (backbone fingerprint, input size, batch
size, device, CPU and its switches, library versions), so the measurement (a few seconds) happens
once per machine.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.capabilities import bf16_supported, cpu_signature, ort_available
from pipeline.data.synthetic import ACTIONS, render_clip
from pipeline.errors import BackboneError, RuntimeConfigError  # noqa: F401 (importable from here as before)
from pipeline.io import atomic_write_text
from pipeline.models.backbones import Backbone, create_backbone
from pipeline.models.onnx import export_backbone

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "auto")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MIN_COSINE = 0.99
_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cache_dir() -> Path:
    return Path(os.environ.get("VAP_HOME", Path.home() / ".cache" / "vap")).expanduser()


def _ort_session(bb: Backbone, threads: int = 0):
    """Export bb.features to ONNX once (cached by fingerprint and input size) and open a session."""
    import onnxruntime as ort

    path = _cache_dir() / "onnx" / f"{bb.name}-{bb.fingerprint}-{bb.input_size}.onnx"
    if not path.is_file():
        device = bb.device
        bb.cpu()  # exported on the CPU; the session picks its own provider
        try:
            export_backbone(bb, path)
        finally:
            bb.to(device)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    # no busy-waiting between runs: ORT's spinning threads would fight PyTorch's (preprocessing, the
    # head) for the same cores, which showed as 5x latency spikes when streaming
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    avail = ort.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if (
        bb.device.type == "cuda" and "CUDAExecutionProvider" in avail) else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), opts, providers=providers)


def check_request(bb: Backbone, runtime: str, precision: str) -> None:
    """Refuse what can never run the same way on every machine, then what this machine cannot run."""
    if runtime not in RUNTIMES or precision not in PRECISIONS:
        raise RuntimeConfigError(f"backbone.runtime must be one of {RUNTIMES} and backbone.precision one of "
                                 f"{PRECISIONS}; got {runtime!r}, {precision!r}")
    if runtime == "onnxruntime" and precision not in ("fp32", "auto"):
        raise RuntimeConfigError("backbone.runtime=onnxruntime runs fp32; set backbone.precision=fp32")
    if "auto" in (runtime, precision):
        return  # auto only ever picks what this machine runs
    dev = bb.device.type
    if precision == "fp16" and dev != "cuda":
        raise RuntimeConfigError("backbone.precision=fp16 needs a CUDA device; on a CPU use fp32, bf16 or auto")
    if precision == "bf16" and dev == "cpu" and not bf16_supported():
        raise RuntimeConfigError("backbone.precision=bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); "
                                 "use fp32 or auto")
    if runtime == "onnxruntime" and not ort_available():
        raise RuntimeConfigError('backbone.runtime=onnxruntime needs: pip install "vap[onnx]"')


class Runtime:
    """A backbone and how its encode() runs. Everything else (name, dim, fingerprint, input_size,
    device, preprocess, ...) is the wrapped backbone's."""

    def __init__(self, backbone: Backbone, runtime: str = "torch", precision: str = "fp32",
                 channels_last: bool = False):
        check_request(backbone, runtime, precision)
        if "auto" in (runtime, precision):
            runtime, precision, channels_last = pick_fastest(backbone, runtime, precision)
        self.backbone = backbone
        self.runtime, self.precision, self.channels_last = runtime, precision, bool(channels_last)
        backbone.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self._ort = _ort_session(backbone) if runtime == "onnxruntime" else None

    def __getattr__(self, name):  # only called for what Runtime itself lacks
        if name == "backbone":  # not set yet (during __init__ or unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.backbone, name)

    @property
    def numerics(self) -> str:
        """How features are computed: 'torch-fp32' (the reference) or e.g. 'torch-bf16', 'onnxruntime-fp32'."""
        return f"{self.runtime}-{self.precision}" + ("-cl" if self.channels_last else "")

    @property
    def cache_id(self) -> str:
        """The fingerprint, plus the numerics for low-precision paths: their features differ in the
        third digit, so they are cached apart from the fp32 ones."""
        same = self.precision == "fp32"  # fp32 paths (eager, channels-last, ONNX Runtime) agree to ~1e-6
        return self.fingerprint if same else f"{self.fingerprint}-{self.numerics}"

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 (T,H,W,3) RGB frames -> float32 (T,D) features, on this runtime."""
        bb = self.backbone
        if len(frames) == 0:
            return np.zeros((0, bb.dim), np.float32)
        low = _LOW.get(self.precision)
        out = []
        for x in bb.batches(frames):  # (b, 3, S, S)
            if self._ort is not None:
                out.append(torch.from_numpy(self._ort.run(None, {"pixels": x.cpu().numpy()})[0]))
                continue
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=low, enabled=low is not None):
                out.append(bb.features(x).float().cpu())
        return torch.cat(out).numpy()


def with_runtime(backbone: Backbone, runtime: str = "torch", precision: str = "fp32",
                 channels_last: bool = False) -> Backbone | Runtime:
    """The backbone itself for plain PyTorch fp32 (the reference), else a Runtime around it."""
    if (runtime, precision, bool(channels_last)) == ("torch", "fp32", False):
        return backbone
    return Runtime(backbone, runtime, precision, channels_last)


def runtime_args(bcfg) -> dict:
    """with_runtime keyword arguments from a BackboneConfig (or its dict, as a checkpoint saves it)."""
    get = bcfg.get if isinstance(bcfg, dict) else lambda k, d: getattr(bcfg, k, d)
    return dict(runtime=get("runtime", "torch"), precision=get("precision", "fp32"),
                channels_last=get("channels_last", False))


def backbone_from_config(bcfg, device: str | None = None, runtime: bool = True) -> Backbone | Runtime:
    """create_backbone from a BackboneConfig on its runtime; device defaults to bcfg.device;
    runtime=False keeps the plain PyTorch module (fine-tuning trains it)."""
    bb = create_backbone(bcfg.name, bcfg.weights, bcfg.input_size, device or bcfg.device, bcfg.batch_size,
                         grid=bcfg.grid)
    return with_runtime(bb, **runtime_args(bcfg)) if runtime else bb


def candidates(bb: Backbone, runtime: str = "auto", precision: str = "auto") -> list[tuple[str, str, bool]]:
    """(runtime, precision, channels_last) paths this machine can run, fp32 eager first."""
    cuda = bb.device.type == "cuda"
    out = [("torch", "fp32", False), ("torch", "fp32", True)]
    if cuda:
        out += [("torch", "fp16", False), ("torch", "fp16", True)]
    elif bf16_supported():
        out += [("torch", "bf16", False), ("torch", "bf16", True)]
    if ort_available():
        out.append(("onnxruntime", "fp32", False))
    return [c for c in out if runtime in ("auto", c[0]) and precision in ("auto", c[1])] or [("torch", "fp32", False)]


def probe_frames(n: int = 8, size: int = 224) -> np.ndarray:
    """Deterministic camera-like frames (synthetic performers over textured, noisy backgrounds) at
    the backbone's input size, for timing and for checking a fast path against fp32 (flat or random
    frames would not exercise the network as video does)."""
    return np.stack([render_clip(ACTIONS[i % len(ACTIONS)], np.random.default_rng(i), size, size,
                                 duration=0.04)[0] for i in range(n)])


def measure(bb, frames: np.ndarray, repeats: int = 3) -> float:
    """Best seconds per call of bb.encode(frames) after one warm-up call."""
    bb.encode(frames)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        bb.encode(frames)
        if bb.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def features_match(a: np.ndarray, ref: np.ndarray) -> bool:
    """cosine > MIN_COSINE on every frame; frames whose reference features are ~0 (random-init
    models with BatchNorm can give that) must instead agree to 1e-4 absolute."""
    live = np.linalg.norm(ref, axis=1) > 1e-4
    ok = bool((cosine(a[live], ref[live]) > MIN_COSINE).all()) if live.any() else True
    return ok and bool(np.allclose(a[~live], ref[~live], atol=1e-4))


def pick_fastest(bb: Backbone, runtime: str = "auto", precision: str = "auto",
                 use_cache: bool = True) -> tuple[str, str, bool]:
    """Measure every candidate path on probe frames and return the fastest whose features have
    cosine similarity > MIN_COSINE with fp32 eager on every frame."""
    key = "|".join(map(str, [bb.name, bb.fingerprint, bb.input_size, bb.batch_size, bb.device, runtime, precision,
                             cpu_signature(), torch.__version__, torch.get_num_threads()]))
    store = _cache_dir() / "runtime.json"
    known = json.loads(store.read_text()) if use_cache and store.is_file() else {}
    if key in known:
        return tuple(known[key]["choice"])  # type: ignore[return-value]
    frames = probe_frames(min(bb.batch_size, 16), bb.input_size)
    ref = bb.encode(frames)  # the plain backbone: the reference every path must match
    results = []
    for cand in candidates(bb, runtime, precision):
        try:
            rt = Runtime(bb, *cand)
            feats = rt.encode(frames)
        except Exception as e:  # e.g. an operator ONNX cannot export: skip that path
            log.info("backbone runtime %s unavailable: %s", cand, str(e).splitlines()[0] if str(e) else e)
            continue
        results.append(dict(choice=list(cand), seconds=measure(rt, frames), ok=features_match(feats, ref),
                            min_cosine=round(float(cosine(feats, ref).min()), 5)))
    bb.to(memory_format=torch.contiguous_format)  # as it came: a channels-last candidate converted it
    good = [r for r in results if r["ok"]]
    best = min(good, key=lambda r: r["seconds"])
    log.info("backbone runtime auto: %s (measured %s)", best["choice"], results)
    if use_cache:
        known[key] = dict(choice=best["choice"], measured=results)
        atomic_write_text(store, json.dumps(known, indent=1))
    return tuple(best["choice"])  # type: ignore[return-value]
