"""The package's shape: no import cycles, and dependencies that point one way along the data flow
(data <- models <- training / inference <- cli / app). Read from the source with ast, so that an
import inside a function counts like one at the top."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from conftest import ROOT

PKG = ROOT / "pipeline"
# the layer of each top-level part; a module may import its own layer and the ones below it
LAYERS = {"errors": 0, "capabilities": 0, "io": 0, "config": 0, "_compat": 0, "cluster": 0, "data": 1, "models": 2,
          "training": 3, "inference": 3, "cli": 4, "app": 4, "__main__": 5, "__init__": 5}


def _modules() -> dict[str, set[str]]:
    """{module: modules of the package it imports}, edges to the imported module itself (a package's
    __init__ is an edge only when the package itself is imported)."""
    names = {".".join(("pipeline", *p.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
             for p in PKG.rglob("*.py")}
    graph = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(("pipeline", *p.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:  # `from pkg import module` imports the module; else the module named
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in names else node.module)
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def test_there_are_no_import_cycles():
    graph = _modules()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def _layer(module: str) -> tuple[str, int]:
    part = module.split(".")[1] if "." in module else "__init__"
    return part, LAYERS[part]


def test_dependencies_point_down_the_data_flow():
    wrong = []
    for m, deps in _modules().items():
        if m == "pipeline":  # the package's __init__ wires the compat aliases
            continue
        part, layer = _layer(m)
        for d in deps:
            dpart, dlayer = _layer(d)
            if dlayer > layer or (dlayer == layer == 3 and dpart != part):  # training and inference are siblings
                wrong.append(f"{m} imports {d}")
    assert not wrong, wrong


def test_every_module_is_in_a_layer():
    assert {_layer(m)[0] for m in _modules()} <= set(LAYERS)


def test_the_flat_layout_paths_still_import():
    """Users' scripts written against the flat layout (pipeline.predict, pipeline.train, ...) keep working."""
    code = ("from pipeline.predict import Predictor, StreamingPredictor\n"
            "from pipeline.train import main\nfrom pipeline.onnx_predict import OnnxPredictor\n"
            "from pipeline.data import load_dataset, DataError\nfrom pipeline.video import load_frames\n"
            "import pipeline.inference.predict as new, pipeline.predict as old\n"
            "assert old is new and new.__spec__.name == 'pipeline.inference.predict'\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_help_and_a_mistyped_command_do_not_load_torch():
    code = ("import sys\nfrom pipeline.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['tarin'])\nexcept SystemExit as e:\n    assert e.code == 2\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
