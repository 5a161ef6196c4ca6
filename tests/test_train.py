import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.models.checkpoint import backbone_of, load_checkpoint
from pipeline.training.classify import class_weights, temporal_indices
from pipeline.training.run import main

from conftest import TINY, TRAINED


def test_temporal_indices():
    rng = np.random.default_rng(0)
    assert list(temporal_indices(10, 0, 0.8, 1.25, None)) == list(range(10))
    for _ in range(50):
        idx = temporal_indices(40, 16, 0.8, 1.25, rng)
        assert len(idx) == 16 and np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < 40
    assert len(temporal_indices(5, 16, 1.0, 1.0, rng)) == 5


def test_class_weights_inverse_frequency():
    w = class_weights([0, 0, 0, 1], 3)
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0]) and float(w.sum()) == pytest.approx(2)


def test_train_writes_the_run_directory_and_resumes(tmp_path, synth_data):
    out = tmp_path / "run"
    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=3", "train.patience=0"])
    m = main(cfg, out, progress=False)
    for name in ["best.pt", "last.pt", "metrics.json", "config.yaml", "split.csv", "log.csv", "train.log",
                 "curves.png", "confusion_val.png"]:
        assert (out / name).is_file(), name
    assert m["epochs_run"] == 3 and m["train_clips"] + m["val_clips"] == 48
    assert json.loads((out / "metrics.json").read_text())["val_top1"] == m["val_top1"]
    split = (out / "split.csv").read_text().splitlines()
    assert split[0] == "path,label,split" and len(split) == 49
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["format_version"] == 1 and ckpt["classes"] == ["jump", "squat", "walk_right", "wave"]
    assert ckpt["config"]["backbone"]["name"] == "tiny_cnn" and ckpt["epoch"] == 2
    assert backbone_of(ckpt).fingerprint == ckpt["backbone_fingerprint"]
    # resume: continue to 5 epochs from last.pt, keeping the history
    from pipeline.training.run import config_for_resume

    m2 = main(config_for_resume(out, ["train.epochs=5"]), out, resume=True, progress=False)
    assert m2["epochs_run"] == 5
    log_rows = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log_rows[1:]] == ["1", "2", "3", "4", "5"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 4


def test_split_is_reproducible(tmp_path, synth_data):
    cfgs = [load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=1"]) for _ in range(2)]
    main(cfgs[0], tmp_path / "a", progress=False)
    main(cfgs[1], tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "split.csv").read_text() == (tmp_path / "b" / "split.csv").read_text()


def test_finetune_backbone_end_to_end_on_cpu(tmp_path, synth_data):
    out = tmp_path / "ft"
    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=2", "train.finetune_backbone=true",
                             "train.max_len=6", "train.device=cpu", "views.motion_size=0"])
    main(cfg, out, progress=False)
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["backbone_state"] is not None
    from pipeline.models.backbones import create_backbone

    start = create_backbone("tiny_cnn", input_size=64).state_dict()
    changed = [k for k, v in ckpt["backbone_state"].items() if v.dtype.is_floating_point
               and not torch.allclose(v, start[k])]
    assert any("weight" in k for k in changed), "the backbone did not train"
    assert backbone_of(ckpt).fingerprint != ckpt["backbone_fingerprint"]  # fine-tuned weights, new cache key


@pytest.mark.slow
@pytest.mark.parametrize("head", ["lstm", "gru", "meanpool"])
def test_heads_learn_synthetic_actions(tmp_path, synth_data, synth_test, synth_cache, trained_ckpt, head):
    """Real pretrained features: each head beats chance (0.25) by a wide margin on unseen clips. The
    LSTM is trained_ckpt itself; the others train on its cached features."""
    from pipeline.training.evaluate import evaluate_checkpoint

    ckpt = trained_ckpt
    if head != "lstm":
        cfg = load_config(None, [f"data.train={synth_data}", f"head.type={head}", *TRAINED])
        cfg.cache.dir = str(synth_cache)
        main(cfg, tmp_path / head, progress=False)
        ckpt = tmp_path / head / "best.pt"
    rep = evaluate_checkpoint(ckpt, synth_test, tmp_path / "eval", progress=False, cache_dir=str(synth_cache))
    assert rep["num_clips"] == 16 and rep["top1"] >= 0.6, rep["top1"]


def test_refit_retrains_best_pt_on_train_plus_val(tmp_path, synth_data):
    out = tmp_path / "refit"
    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=4", "train.patience=0",
                             "train.refit=true", "train.ensemble=1"])
    m = main(cfg, out, progress=False)
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")
    assert m["refit"] and m["heads"] == 1 and best["refit"] == dict(epochs=m["best_epoch"], heads=1, clips=48)
    assert "refit" not in last  # last.pt stays the selection run, for --resume
    sel = {k: v for k, v in best["head_state"].items()}
    assert any(not torch.equal(sel[k], last["head_state"][k]) for k in sel)

    # train.ensemble=3: three heads refit from seeds 0, 1, 2; the first is the one head above, and best.pt
    # predicts with the mean of their probabilities
    from pipeline.models.checkpoint import head_of
    from pipeline.models.heads import EnsembleHead

    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=4", "train.patience=0",
                             "train.refit=true", "train.ensemble=3"])
    m3 = main(cfg, tmp_path / "ensemble", progress=False)
    ens = load_checkpoint(tmp_path / "ensemble" / "best.pt")
    assert m3["heads"] == 3 and ens["refit"] == dict(epochs=m3["best_epoch"], heads=3, clips=48)
    assert m3["best_epoch"] == m["best_epoch"]  # the same selection run
    first = {k[len("members.0."):]: v for k, v in ens["head_state"].items() if k.startswith("members.0.")}
    assert first.keys() == sel.keys() and all(torch.equal(first[k], sel[k]) for k in sel)
    assert any(not torch.equal(ens["head_state"][f"members.1.{k}"], sel[k]) for k in sel)
    head = head_of(ens)
    assert isinstance(head, EnsembleHead) and len(head.members) == 3
    x = torch.randn(2, 5, ens["feature_dim"])
    with torch.no_grad():
        mean = torch.stack([torch.softmax(h(x).clip, -1) for h in head.members]).mean(0)
        assert torch.allclose(head(x).clip.exp(), mean, atol=1e-6)


@pytest.mark.slow  # 12-15 s: keeps the quick tier under 3 minutes
def test_refit_with_flip_augmentation_mirrors_the_validation_clips_too(tmp_path, synth_data, monkeypatch):
    """refit trains on train + val: the validation videos need their mirrored features as well."""
    counts = {}
    for refit in (False, True):
        monkeypatch.setenv("VAP_CACHE", str(tmp_path / f"cache-{refit}"))  # a cache of its own
        cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=2", "train.patience=0",
                                 "train.flip_aug=true", "views.streams=[frame]", f"train.refit={str(refit).lower()}"])
        m = main(cfg, tmp_path / f"run-{refit}", progress=False)
        counts[refit] = (len(list((tmp_path / f"cache-{refit}").rglob("*.npz"))), m["train_clips"], m["val_clips"])
    (n0, tr, va), (n1, _, _) = counts[False], counts[True]
    assert n0 == 2 * tr + va and n1 == 2 * (tr + va)  # one entry per video and direction (one stream)


@pytest.mark.slow  # 12-15 s: keeps the quick tier under 3 minutes
def test_flip_augmentation_caches_mirrored_features(tmp_path, synth_data):
    from pipeline.data.datasets import load_dataset
    from pipeline.models.backbones import create_backbone
    from pipeline.models.cache import FeatureCache
    from pipeline.training.clips import load_feature_clips

    cfg = load_config(None, [*TINY, "views.streams=[frame]"])  # compared below with whole mirrored frames
    bb = create_backbone("tiny_cnn", input_size=64)
    ds = load_dataset(synth_data)
    clips, _ = load_feature_clips(ds, ds.classes, bb, cfg, FeatureCache(tmp_path / "c"), progress=False, flip=True)
    c = clips[0]
    assert c.feats_flip is not None and c.feats_flip.shape == c.feats.shape
    assert not torch.allclose(c.feats, c.feats_flip)  # the mirrored frames give other features
    from pipeline.data.video import load_frames

    frames, _ = load_frames(c.path, fps=8, max_side=320)
    assert np.allclose(c.feats_flip.numpy(), bb.encode(frames[:, :, ::-1]), atol=2e-2)
    m = main(load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=2", "train.flip_aug=true"]),
             tmp_path / "run", progress=False)
    assert m["epochs_run"] == 2


def test_flip_auto_is_off_for_classes_that_name_a_direction(tiny_ckpt):
    """train.flip_aug=auto (the default) mirrors clips only where no class name says a direction: a
    mirror turns walk_left into walk_right. The run records the decision, in config.yaml and best.pt."""
    import yaml

    from pipeline.training.loop import directional

    assert directional(["wave", "walk_right", "Swiping Left", "turn_clockwise"]) == [
        "walk_right", "Swiping Left", "turn_clockwise"]
    assert directional(["handshake", "hug", "kick", "point", "punch", "push"]) == []
    assert directional(["bend", "jack", "jump", "pjump", "run", "side", "skip", "walk", "wave1", "wave2"]) == []
    assert load_config(None, []).train.flip_aug == "auto"
    run = Path(tiny_ckpt).parent  # trained with the default on wave, squat, jump, walk_right
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["flip_aug"] == "false"
    assert load_checkpoint(tiny_ckpt)["config"]["train"]["flip_aug"] == "false"
    assert load_config(None, ["train.flip_aug=true"]).train.flip_aug == "true"  # YAML's true is the choice


def test_multi_clip_testing_averages_evenly_spaced_crops():
    import torch

    from pipeline.config import HeadConfig
    from pipeline.models.heads import build_head, crop_average, eval_crops

    assert [list(c) for c in eval_crops(10, 4, 3)] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert len(eval_crops(4, 4, 3)) == 1 and len(eval_crops(10, 0, 3)) == 1 and len(eval_crops(10, 4, 1)) == 1
    torch.manual_seed(0)
    head = build_head(HeadConfig(), 8, 3).eval()
    x, lengths = torch.randn(2, 10, 8), torch.tensor([10, 3])
    got = crop_average(head, x, lengths, 4, 3).exp()
    want0 = torch.stack([torch.softmax(head(x[:1, i]).clip, -1)[0] for i in eval_crops(10, 4, 3)]).mean(0)
    assert torch.allclose(got[0], want0, atol=1e-6)
    assert torch.allclose(got[1], torch.softmax(head(x[1:, :3]).clip, -1)[0], atol=1e-6)  # short: whole clip


@pytest.mark.slow  # 12-15 s: keeps the quick tier under 3 minutes
def test_finetune_last_blocks_on_cached_trunk_maps(tmp_path, synth_data, synth_test):
    """train.finetune_blocks=1: only the last stage changes, the trunk maps come from the cache (a
    second run decodes nothing), and prediction and vap eval use the fine-tuned backbone."""
    import torch

    from pipeline.inference.predict import Predictor
    from pipeline.models.backbones import create_backbone
    from pipeline.models.checkpoint import backbone_of, load_checkpoint
    from pipeline.training.evaluate import evaluate_checkpoint

    ov = [f"data.train={synth_data}", "backbone.name=tiny_cnn", "backbone.input_size=64", "video.fps=8", "train.epochs=2",
          "train.finetune_blocks=1", "train.backbone_lr=0.01", "views.streams=[frame,diff]", "train.flip_aug=true",
          "train.copies=0"]  # the maps of rewritten copies are not counted here
    main(load_config(None, ov), tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    ref = create_backbone("tiny_cnn").state_dict()
    tuned = ckpt["backbone_state"]
    changed = {k for k in ref if not torch.equal(ref[k], tuned[k])}
    assert changed and all(k.startswith("net.6.") or k.startswith("net.7.") for k in changed), changed
    assert backbone_of(ckpt).fingerprint != create_backbone("tiny_cnn").fingerprint
    cache = Path(os.environ["VAP_CACHE"])
    maps = [p for p in cache.rglob("*.npz") if np.load(p)["features"].ndim == 4]
    assert len(maps) == 2 * (48 + 40)  # 2 streams x (48 clips + the 40 training clips mirrored), maps (T,C,h,w)
    main(load_config(None, [*ov, "train.epochs=1"]), tmp_path / "run2", progress=False)  # all from the cache
    assert len(list(cache.rglob("*.npz"))) == len(maps)
    video = sorted(synth_test.glob("*/*.mp4"))[0]
    assert Predictor(ckpt, "cpu").predict(video).topk
    rep = evaluate_checkpoint(tmp_path / "run" / "best.pt", synth_test, tmp_path / "eval", progress=False)
    assert rep["num_clips"] == 16
    with pytest.raises(Exception, match="finetune_blocks"):
        load_config(None, ["train.finetune_blocks=1", "train.finetune_backbone=true"])
    with pytest.raises(Exception, match="set views.motion_size=0"):  # the default motion stream is smaller
        load_config(None, ["train.finetune_blocks=1"])


def test_refit_keeps_class_balance_sampler(tmp_path, synth_data, monkeypatch):
    """The refit trains with the same class balancing as the selection run (it used to drop the sampler)."""
    from pipeline.training import classify

    seen = []
    real = classify.train_one_epoch

    def spy(*args, **kwargs):
        seen.append(args[8] if len(args) > 8 else kwargs.get("sampler_w"))
        return real(*args, **kwargs)

    monkeypatch.setattr(classify, "train_one_epoch", spy)
    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=2", "train.patience=0",
                             "train.refit=true", "train.class_balance=sampler", "views.streams=[frame]"])
    m = main(cfg, tmp_path / "run", progress=False)
    assert m["refit"] and len(seen) == 2 + m["heads"] * m["best_epoch"]  # selection epochs, then each refit head's
    assert all(w is not None and abs(w.sum() - 1) < 1e-9 for w in seen)
    assert len(seen[-1]) == m["train_clips"] + m["val_clips"]  # the refit samples over train + val


def test_rewritten_copies_are_real_files_that_train_and_never_validate(tmp_path, synth_data, monkeypatch):
    """train.copies=2: every clip also as a shaken, zoomed H.264 file and as a smaller one at 25 fps, written once
    under the cache, read through the real decoder; they are clips of their own beside their clip, in training
    and in validation (of the validation clips' people only)."""
    from pipeline.data.copies import KINDS, copy_path, write_copies
    from pipeline.data.video import load_frames, probe
    from pipeline.training.clips import with_copies

    cache = tmp_path / "cache"
    monkeypatch.setenv("VAP_CACHE", str(cache))
    cfg = load_config(None, [*TINY, f"data.train={synth_data}", "train.epochs=2", "train.patience=0",
                             "train.copies=2", "views.streams=[frame]"])
    m = main(cfg, tmp_path / "run", progress=False)
    assert m["train_clips"] + m["val_clips"] == 48 and m["train_copies"] == 2 * m["train_clips"]
    assert m["val_copies"] == 2 * m["val_clips"]
    split = (tmp_path / "run" / "split.csv").read_text()
    assert "copies" not in split  # the split is of the user's clips; each copy follows its clip
    copies = sorted((cache / "copies").glob("*.mp4"))
    assert len(copies) == 2 * 48  # the validation clips' too: the refit reads them
    # the copies are clips of their own, of their clip's label, in training and in validation
    from pipeline.data.datasets import load_dataset
    from pipeline.models.backbones import create_backbone
    from pipeline.models.cache import FeatureCache
    from pipeline.training.clips import load_feature_clips

    ds = load_dataset(synth_data)
    bb = create_backbone("tiny_cnn", input_size=64)
    clips, _ = load_feature_clips(ds, ds.classes, bb, cfg, FeatureCache(cache), progress=False, flip=True, copies=2)
    assert len(clips) == 48 and all(len(c.copies) == 2 for c in clips)
    rows = with_copies(clips)
    assert len(rows) == 3 * 48 and [r.target for r in rows[:3]] == [clips[0].target] * 3
    assert all(not r.copies and r.feats_flip is not None for r in rows)
    assert rows[1].feats is clips[0].copies[0][0] and not torch.equal(rows[0].feats[:5], rows[1].feats[:5])

    src = sorted(synth_data.rglob("*.mp4"))[0]
    shaken, smaller = (copy_path(src, k, cache / "copies") for k in KINDS)
    a, ta = load_frames(src, sampling="all")
    b, tb = load_frames(shaken, sampling="all")
    c, tc = load_frames(smaller, sampling="all")
    assert probe(shaken).fps == probe(src).fps and b.shape == a.shape  # the same frames, the camera moved
    assert np.abs(b.astype(int) - a.astype(int)).mean() > 2
    assert probe(smaller).fps == 25 and abs(tc[-1] - ta[-1]) < 0.1  # the same seconds, 25 a second
    assert 0.5 * a.shape[1] - 2 <= c.shape[1] <= 0.8 * a.shape[1] and 0.5 * a.shape[2] - 2 <= c.shape[2] <= 0.8 * a.shape[2]

    # written once: a rerun keeps the files (and so their cache entries); a file that is no video gets no copy
    stamp = [p.stat().st_mtime_ns for p in copies]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video")
    made = write_copies([str(src), str(bad)], 2, cache / "copies")
    assert made == {str(src): [str(shaken), str(smaller)], str(bad): []}
    assert [p.stat().st_mtime_ns for p in copies] == stamp
    entries = len(list(cache.rglob("*.npz")))
    main(cfg, tmp_path / "run2", progress=False)
    assert len(list(cache.rglob("*.npz"))) == entries
