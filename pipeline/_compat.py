"""Module paths from before the package was split into data/, models/, training/ and inference/
(e.g. `from pipeline.predict import Predictor`) keep working: each old name is the new module."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "video": "pipeline.data.video", "views": "pipeline.data.views", "segments": "pipeline.data.segments",
    "synthetic": "pipeline.data.synthetic", "grammar": "pipeline.data.grammar", "compose": "pipeline.data.compose",
    "backbones": "pipeline.models.backbones", "runtime": "pipeline.models.runtime", "heads": "pipeline.models.heads",
    "checkpoint": "pipeline.models.checkpoint", "cache": "pipeline.models.cache",
    "train": "pipeline.training.run", "train_next": "pipeline.training.next_event",
    "evaluate": "pipeline.training.evaluate", "metrics": "pipeline.training.metrics",
    "predict": "pipeline.inference.predict", "batch": "pipeline.inference.batch", "render": "pipeline.inference.render",
    "export": "pipeline.inference.export", "onnx_predict": "pipeline.inference.onnx_predict",
}  # pipeline.data (the old datasets module) is the data package, which re-exports its names


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        old = name.rpartition(".")[2]
        if name.startswith("pipeline.") and name.count(".") == 1 and old in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name.rpartition(".")[2]])
        self._spec = module.__spec__  # the import machinery overwrites it with the alias's next
        return module

    def exec_module(self, module):  # the new module is already executed: only undo the overwrite
        module.__spec__ = self._spec


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
