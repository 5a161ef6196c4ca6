"""vap: video action recognition with per-frame CNN features and an LSTM head."""
__version__ = "0.1.0"
