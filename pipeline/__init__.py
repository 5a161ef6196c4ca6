"""vap: video action recognition with per-frame CNN features and an LSTM head.

The package's folders are the data flow: data (decode, views, datasets) <- models (backbones,
runtimes, heads, cache, checkpoints) <- training / inference <- cli / app."""
from pipeline import _compat
from pipeline.capabilities import apply_cpu_switch

__version__ = "0.1.0"

apply_cpu_switch()  # VAP_CPU_FEATURES=generic must reach PyTorch before its kernels load
_compat.install()   # the module paths of the flat layout (pipeline.predict, ...) still import
