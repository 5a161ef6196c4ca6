"""How a backbone's encode() runs: a Runtime wraps a plain Backbone (which knows nothing of this)
and runs it as PyTorch eager (fp32, bf16 / fp16 autocast, channels-last) or on ONNX Runtime (fp32, or
int8: static quantization calibrated on fixed probe frames); `auto` measures the candidates once on
this machine and keeps the fastest one whose features match the fp32 reference (cosine similarity
> 0.99; int8 competes only with precision=auto, or alone with precision=int8, where > 0.97 will do).

The choice is cached in ~/.cache/vap/runtime.json per (backbone fingerprint, input size, batch
size, device, CPU and its switches, library versions), so the measurement (a few seconds) happens
once per machine. Long jobs (training, extraction) measure; a prediction on a machine that has not
measured yet does not wait for it: it takes the usual winner (ONNX Runtime on a CPU, PyTorch on a
GPU), checks its features against fp32 eager on a few probe frames, and records the choice as
provisional until a long job measures (docs/benchmarks.md has the numbers behind the prior).
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
from pipeline.models.onnx import export_backbone, quantize_backbone

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "auto")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
CALIBRATION_FRAMES = 64  # probe frames whose activation ranges calibrate the int8 backbone
MIN_COSINE = 0.99
# int8 features sit at cosine 0.98-0.99 of fp32 on real frames (EfficientNet-Lite0, Weizmann), which
# cost the LSTM 1.5 points of top-1 on unseen actors (docs/results.md): `auto` keeps int8 on its own
# only at MIN_COSINE like every path; asked for by name (precision=int8) it must only not be broken
MIN_COSINE_INT8 = 0.97
_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cache_dir() -> Path:
    return Path(os.environ.get("VAP_HOME", Path.home() / ".cache" / "vap")).expanduser()


def _ort_session(bb: Backbone, threads: int = 0, int8: bool = False):
    """Export bb.features to ONNX once (cached by fingerprint and input size), with int8 quantize that
    once too, and open a session."""
    import onnxruntime as ort

    path = _cache_dir() / "onnx" / f"{bb.name}-{bb.fingerprint}-{bb.input_size}.onnx"
    if not path.is_file():
        device = bb.device
        bb.cpu()  # exported on the CPU; the session picks its own provider
        try:
            export_backbone(bb, path)
        finally:
            bb.to(device)
    if int8:
        fp32_path, path = path, path.with_name(f"{path.stem}-int8.onnx")
        if not path.is_file():
            # calibration: camera-like synthetic frames (performers over textured, noisy backgrounds),
            # the same on every machine, so an int8 model is the same file everywhere; not the frames
            # the parity check of pick_fastest looks at
            with torch.inference_mode():
                pixels = bb.preprocess(torch.from_numpy(probe_frames(CALIBRATION_FRAMES, bb.input_size, first=1000)))
            quantize_backbone(fp32_path, path, pixels.cpu().numpy())
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
    if runtime == "onnxruntime" and precision not in ("fp32", "int8", "auto"):
        raise RuntimeConfigError("backbone.runtime=onnxruntime runs fp32 or int8; set backbone.precision=fp32 "
                                 "or int8")
    if runtime == "torch" and precision == "int8":
        raise RuntimeConfigError("backbone.precision=int8 runs on ONNX Runtime; set backbone.runtime=onnxruntime "
                                 "(or auto)")
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
                 channels_last: bool = False, measure: bool = True):
        check_request(backbone, runtime, precision)
        if "auto" in (runtime, precision):
            runtime, precision, channels_last = pick_fastest(backbone, runtime, precision, measure=measure)
        self.backbone = backbone
        self.runtime, self.precision, self.channels_last = runtime, precision, bool(channels_last)
        backbone.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self._ort = _ort_session(backbone, int8=precision == "int8") if runtime == "onnxruntime" else None

    def __getattr__(self, name):  # only called for what Runtime itself lacks
        if name == "backbone":  # not set yet (during __init__ or unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.backbone, name)

    def at_size(self, size: int) -> "Runtime":
        """The same backbone and path at another input side (its own ONNX session when on ONNX Runtime)."""
        if size == self.backbone.input_size:
            return self
        made = self.__dict__.setdefault("_at_size", {})  # one per size: a session costs ~0.3 s to open
        if size not in made:
            made[size] = Runtime(self.backbone.at_size(size), self.runtime, self.precision, self.channels_last)
        return made[size]

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
                 channels_last: bool = False, measure: bool = True) -> Backbone | Runtime:
    """The backbone itself for plain PyTorch fp32 (the reference), else a Runtime around it.
    measure=False: `auto` does not time the paths when this machine has no choice yet (pick_fastest)."""
    if (runtime, precision, bool(channels_last)) == ("torch", "fp32", False):
        return backbone
    return Runtime(backbone, runtime, precision, channels_last, measure)


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
        out += [("onnxruntime", "fp32", False), ("onnxruntime", "int8", False)]
    return [c for c in out if runtime in ("auto", c[0]) and precision in ("auto", c[1])] or [("torch", "fp32", False)]


def probe_frames(n: int = 8, size: int = 224, first: int = 0) -> np.ndarray:
    """Deterministic camera-like frames (synthetic performers over textured, noisy backgrounds) at
    the backbone's input size, for timing and for checking a fast path against fp32 (flat or random
    frames would not exercise the network as video does)."""
    return np.stack([render_clip(ACTIONS[i % len(ACTIONS)], np.random.default_rng(i), size, size,
                                 duration=0.04)[0] for i in range(first, first + n)])


def seconds_per_call(bb, frames: np.ndarray, repeats: int = 3) -> float:
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


def cosine_bar(asked: str, path: str) -> float:
    """How close to fp32 eager the features of a path of precision `path` must be for `auto` to keep it,
    when backbone.precision is `asked`: MIN_COSINE, or MIN_COSINE_INT8 for int8 asked for by name."""
    return MIN_COSINE_INT8 if asked == path == "int8" else MIN_COSINE


def features_match(a: np.ndarray, ref: np.ndarray, bar: float = MIN_COSINE) -> bool:
    """cosine > bar on every frame; frames whose reference features are ~0 (random-init models with
    BatchNorm can give that) must instead agree to 1e-4 absolute."""
    live = np.linalg.norm(ref, axis=1) > 1e-4
    ok = bool((cosine(a[live], ref[live]) > bar).all()) if live.any() else True
    return ok and bool(np.allclose(a[~live], ref[~live], atol=1e-4))


def prior(bb: Backbone, cands: list[tuple[str, str, bool]]) -> tuple[str, str, bool]:
    """The path that won the measurement on every machine so far (docs/benchmarks.md): ONNX Runtime fp32
    on a CPU, PyTorch fp32 on a GPU; the first candidate when that one is not among them."""
    usual = ("torch", "fp32", False) if bb.device.type == "cuda" else ("onnxruntime", "fp32", False)
    return usual if usual in cands else cands[0]


def pick_fastest(bb: Backbone, runtime: str = "auto", precision: str = "auto",
                 use_cache: bool = True, measure: bool = True) -> tuple[str, str, bool]:
    """Measure every candidate path on probe frames and return the fastest whose features have
    cosine similarity > MIN_COSINE with fp32 eager on every frame (int8 asked for by name: MIN_COSINE_INT8).

    measure=False (prediction): a choice this machine measured before is used as it is; without one,
    the prior path is checked against fp32 eager on 8 probe frames (no timing) and kept, marked
    provisional, so that the next measuring job (training, extraction) replaces it."""
    key = "|".join(map(str, [bb.name, bb.fingerprint, bb.input_size, bb.batch_size, bb.device, runtime, precision,
                             cpu_signature(), torch.__version__, torch.get_num_threads()]))
    store = _cache_dir() / "runtime.json"
    known = json.loads(store.read_text()) if use_cache and store.is_file() else {}
    if key in known and not (measure and known[key].get("provisional")):
        return tuple(known[key]["choice"])  # type: ignore[return-value]
    cands = candidates(bb, runtime, precision)
    if not measure:
        frames = probe_frames(8, bb.input_size)
        guess = prior(bb, cands)
        try:
            feats = Runtime(bb, *guess).encode(frames)
            ok = features_match(feats, bb.encode(frames), cosine_bar(precision, guess[1]))
        except Exception as e:  # e.g. an operator ONNX cannot export
            log.info("backbone runtime %s unavailable: %s", guess, str(e).splitlines()[0] if str(e) else e)
            ok = False
        if ok:
            if use_cache:
                known[key] = dict(choice=list(guess), provisional=True)
                atomic_write_text(store, json.dumps(known, indent=1))
            return guess
        log.info("backbone runtime auto: the usual path %s does not match fp32 eager here; measuring", guess)
    frames = probe_frames(min(bb.batch_size, 16), bb.input_size)
    ref = bb.encode(frames)  # the plain backbone: the reference every path must match
    results = []
    for cand in cands:
        try:
            rt = Runtime(bb, *cand)
            feats = rt.encode(frames)
        except Exception as e:  # e.g. an operator ONNX cannot export: skip that path
            log.info("backbone runtime %s unavailable: %s", cand, str(e).splitlines()[0] if str(e) else e)
            continue
        results.append(dict(choice=list(cand), seconds=seconds_per_call(rt, frames),
                            ok=features_match(feats, ref, cosine_bar(precision, cand[1])),
                            min_cosine=round(float(cosine(feats, ref).min()), 5)))
    bb.to(memory_format=torch.contiguous_format)  # as it came: a channels-last candidate converted it
    good = [r for r in results if r["ok"]]
    if not good:  # e.g. precision=int8 asked of `auto` where int8 strays too far: the reference, said so
        log.warning("backbone runtime auto: no %s path matches fp32 eager here (%s); using PyTorch fp32",
                    precision, results)
        good = [dict(choice=["torch", "fp32", False], seconds=0.0)]
    best = min(good, key=lambda r: r["seconds"])
    log.info("backbone runtime auto: %s (measured %s)", best["choice"], results)
    if use_cache:
        known[key] = dict(choice=best["choice"], measured=results)
        atomic_write_text(store, json.dumps(known, indent=1))
    return tuple(best["choice"])  # type: ignore[return-value]
