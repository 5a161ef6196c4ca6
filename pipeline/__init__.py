"""vap: video action recognition with per-frame CNN features and an LSTM head."""
from .capabilities import apply_cpu_switch

__version__ = "0.1.0"

apply_cpu_switch()  # VAP_CPU_FEATURES=generic must reach PyTorch before its kernels load
