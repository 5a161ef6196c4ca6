"""What this machine can run, and two switches that hide a capability so that every branch runs on
every machine (CI runs the runtime and decoder tests a second time under both).

    VAP_CPU_FEATURES=generic   behave as an AVX2-only x86 CPU: no CPU bf16 (AVX512-BF16 / AMX), and
                               PyTorch's own kernels limited to AVX2 (ATEN_CPU_CAPABILITY=avx2,
                               ONEDNN_MAX_CPU_ISA=AVX2, set here before torch loads them).
                               Default: native (what the CPU has).
    VAP_DECORD=0               decord is not available: decoder=auto reads with OpenCV, as on machines
                               without a decord wheel (aarch64, macOS on ARM).

Nothing here imports torch at module level: the CLI's --help and the torch-free ONNX predictor
import this module too.
"""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

CPU_FEATURE_MODES = ("native", "generic")
# The flags that change which runtime path is fastest or even possible, in the order a report shows them.
_REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_feature_mode() -> str:
    mode = os.environ.get("VAP_CPU_FEATURES", "native").strip().lower() or "native"
    if mode not in CPU_FEATURE_MODES:
        raise ValueError(f"VAP_CPU_FEATURES={mode!r}: use one of {', '.join(CPU_FEATURE_MODES)}")
    return mode


def generic_cpu() -> bool:
    """True under VAP_CPU_FEATURES=generic: CPU bf16 and AVX-512 kernels are hidden."""
    return cpu_feature_mode() == "generic"


def apply_cpu_switch() -> None:
    """Under VAP_CPU_FEATURES=generic, limit PyTorch's kernels to AVX2 as well. ATen and oneDNN read
    these variables when they first dispatch, so this runs when `pipeline` is imported; a variable
    the user set stays as set."""
    if generic_cpu():
        os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


def decord_enabled() -> bool:
    """False under VAP_DECORD=0 (decord is then treated as not installed)."""
    return os.environ.get("VAP_DECORD", "1").strip().lower() not in ("0", "false", "no", "off")


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (Linux); empty elsewhere."""
    p = Path("/proc/cpuinfo")
    out: dict[str, str] = {}
    if not p.is_file():
        return out
    for line in p.read_text(errors="replace").splitlines():
        if not line.strip():
            if out:
                break
            continue
        k, _, v = line.partition(":")
        out.setdefault(k.strip(), v.strip())
    return out


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU flags that matter here (AVX2, AVX-512, bf16, AMX, ...) that this CPU reports."""
    info = _cpuinfo()
    have = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in _REPORTED_FLAGS if f in have]


def bf16_supported() -> bool:
    """CPU bf16 is worth it only with native support (AVX512-BF16 / AMX); emulated, it is slower."""
    if generic_cpu():
        return False
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def ort_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def online(host: str, timeout: float = 3.0) -> bool:
    """Whether host:443 answers: weight downloads are tried only when it does (fail fast offline)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cpu_signature() -> str:
    """Identifies the CPU and the switch for caches of per-machine measurements (runtime.json)."""
    return f"{cpu_model()}|{'+'.join(cpu_flags())}|{cpu_feature_mode()}|{os.cpu_count()}"


def describe() -> dict:
    """The machine as a bench report's header shows it."""
    import torch

    d = dict(cpu=cpu_model(), flags=cpu_flags(), cpu_features=cpu_feature_mode(), cores=os.cpu_count(),
             torch=torch.__version__, threads=torch.get_num_threads(),
             torch_cpu_capability=torch.backends.cpu.get_cpu_capability(), bf16=bf16_supported())
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d
