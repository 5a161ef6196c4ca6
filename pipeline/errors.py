"""Every error a user can cause, under one base: the CLI and the app catch VapError (and only that)
and show its message, one line that names the file or key and says what to do. Anything else is a
bug and keeps its traceback."""
from __future__ import annotations


class VapError(ValueError):
    """Base of the user-facing errors (a ValueError, as each of them was before this base existed)."""


class ConfigError(VapError):
    """A bad key, a bad value or an unreadable config file."""


class DataError(VapError):
    """A dataset, list or annotation file that cannot be used; the message names it."""


class VideoError(VapError):
    """A video that cannot be used; str() names the file and the problem in one line."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class GrammarError(VapError):
    """A grammar file that cannot be used; the message names it."""


class BackboneError(VapError):
    """Unknown backbone or weights that cannot be had; the message says what to do."""


class RuntimeConfigError(BackboneError):
    """A runtime or precision this machine cannot run; the message says what to use instead."""


class CheckpointError(VapError):
    """A checkpoint that cannot be used; the message names the file."""


class TrainError(VapError):
    """A training run that cannot start; the message says why."""


class ExportError(VapError):
    """A checkpoint that cannot be exported (e.g. a bidirectional head cannot stream)."""


class SourceError(VapError):
    """A prediction source that cannot be used (a pattern matching nothing, an unreadable list)."""


class ClusterError(VapError):
    """A scale-out engine that cannot run: Ray not installed, a cluster that cannot be reached, a bad
    --nproc; the message says what to do."""
