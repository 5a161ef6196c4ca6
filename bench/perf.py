"""Performance benchmarks. Each prints JSON; ratios are against a baseline measured in the same run.

    python bench/perf.py decode|backbone|e2e|streaming|training|memory|peer|mirror [--quick]
    python bench/run_all.py        # all of them, and a Markdown table (bench/results.md)

decode     frames/s of decord and OpenCV (through pipeline.video, no resize) on a 320x240 clip and a
           60 s 1920x1080 H.264 30 fps clip, every frame and sampled at 8 fps; ffmpeg -benchmark
           as the bound where ffmpeg is installed
backbone   frames/s of each backbone for every runtime path this machine has (runtime.candidates:
           eager fp32, channels-last, bf16 or fp16 autocast, ONNX Runtime); the fastest correct one
e2e        `vap predict`'s code (batch.run_batch) frames/s over a folder / backbone-only frames/s of
           the same backbone and runtime on the same decoded frames (goal >= 0.9)
streaming  StreamingPredictor.push latency p50/p95 / single-frame backbone time (goal p95 <= 1.2x + 1 ms)
training   30 epochs over 1,000 feature sequences of 64 steps, default LSTM, CPU: padded+masked vs packed
memory     peak RSS of `vap predict` (a child process) on the 60 s 1080p clip and on a 10 min one
peer       per-video cost of torchvision r2plus1d_18 / r3d_18 (16-frame 112x112 clips covering the
           video) against our pipeline on the same video (goal: ours < 1/5)
mirror     a training folder's features as they are and mirrored (flip augmentation), default views: one
           decode for both against two passes (ratio; the features must be identical)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline.capabilities import describe  # noqa: E402

from media import BENCH_DIR, ROOT, clip_folder, make_video, repeat_video, timing_checkpoint  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "True")
DEVICE = os.environ.get("VAP_BENCH_DEVICE", "auto")  # --device; the training benchmark is CPU by design


def _fps(fn, frames: int, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return frames / best


# ----------------------------------------------------------------------------- 1. decode

def bench_decode(quick: bool = False) -> dict:
    from pipeline.data.video import iter_frames

    files = {"320x240": make_video(BENCH_DIR / "small20.mp4", 20, 320, 240, 25),
             "1920x1080": make_video(BENCH_DIR / "hd60.mp4", 60, 1920, 1080, 30)}
    rows = []
    for label, path in files.items():
        from pipeline.data.video import decord_available

        for decoder in ("decord", "opencv"):
            if decoder == "decord" and not decord_available():
                rows.append(dict(video=label, decoder="decord", sampling="-", skipped="decord is not installed"))
                continue
            for sampling, fps in (("all", 0.0), ("fps", 8.0)):
                if quick and label == "1920x1080" and sampling == "all":
                    continue
                n = 0
                t0 = time.perf_counter()
                for f, _ in iter_frames(str(path), sampling=sampling, fps=fps or 10.0, decoder=decoder, max_side=0):
                    n += len(f)
                el = time.perf_counter() - t0
                rows.append(dict(video=label, decoder=decoder, sampling="every frame" if sampling == "all" else "8 fps",
                                 frames=n, frames_per_s=round(n / el, 1)))
        if shutil.which("ffmpeg"):
            t0 = time.perf_counter()
            subprocess.run(["ffmpeg", "-v", "error", "-benchmark", "-i", str(path), "-f", "null", "-"], check=True,
                           capture_output=True)
            from pipeline.data.video import probe

            n = probe(str(path)).num_frames
            rows.append(dict(video=label, decoder="ffmpeg CLI (bound)", sampling="every frame", frames=n,
                             frames_per_s=round(n / (time.perf_counter() - t0), 1)))
        else:
            rows.append(dict(video=label, decoder="ffmpeg CLI (bound)", sampling="every frame",
                             skipped="ffmpeg is not installed"))
    return dict(bench="decode", rows=rows)


# ----------------------------------------------------------------------------- 2. backbone

DEFAULT_BACKBONES = ["efficientnet_lite0", "mobilenet_v3_small", "resnet18", "yolo26n-cls", "yolo11n-cls", "tiny_cnn"]


def bench_backbone(quick: bool = False, names: list[str] | None = None, batch: int = 16) -> dict:
    from pipeline.models.backbones import create_backbone
    from pipeline.models.runtime import Runtime, candidates, cosine, features_match, probe_frames

    if os.environ.get("VAP_BENCH_ALL_BACKBONES"):  # every registered backbone (slow: ResNet50, ConvNeXt...)
        from pipeline.models.backbones import list_backbones

        names = list_backbones()
    names = names or (DEFAULT_BACKBONES[:2] if quick else DEFAULT_BACKBONES)
    rows = []
    for name in names:
        weights = "default" if name == "efficientnet_lite0" else "none"
        size = 64 if name == "tiny_cnn" else 224
        try:
            bb = create_backbone(name, weights, size, DEVICE, batch)
        except Exception as e:  # e.g. ultralytics not installed on this machine
            rows.append(dict(backbone=name, weights=weights, input_size=size, error=str(e).splitlines()[0][:160]))
            continue
        frames = probe_frames(batch, size)
        ref = bb.encode(frames)
        results = []
        for path in candidates(bb):
            try:
                rt = Runtime(bb, *path)
                feats = rt.encode(frames)
                c = float(cosine(feats, ref).min())
                fps = _fps(lambda: rt.encode(frames), len(frames), repeats=2 if quick else 3)
                results.append(dict(runtime=path[0], precision=path[1], channels_last=path[2],
                                    frames_per_s=round(fps, 1), min_cosine=round(c, 5),
                                    ok=features_match(feats, ref)))  # as auto with precision=auto judges
            except Exception as e:
                results.append(dict(runtime=path[0], precision=path[1], channels_last=path[2],
                                    error=str(e).splitlines()[0][:160] if str(e) else type(e).__name__))
        base = next(r["frames_per_s"] for r in results if r.get("runtime") == "torch" and r["precision"] == "fp32"
                    and not r["channels_last"])
        good = [r for r in results if r.get("ok")]
        best = max(good, key=lambda r: r["frames_per_s"])  # what precision=auto may pick
        best32 = max((r for r in good if r["precision"] == "fp32"), key=lambda r: r["frames_per_s"])  # the default
        rows.append(dict(backbone=name, weights=weights, input_size=size, batch=batch, device=str(bb.device),
                         paths=results,
                         fastest=f"{best['runtime']} {best['precision']}" + (" channels-last" if best["channels_last"] else ""),
                         fastest_fps=best["frames_per_s"], speedup_vs_eager_fp32=round(best["frames_per_s"] / base, 2),
                         fastest_fp32=f"{best32['runtime']}" + (" channels-last" if best32["channels_last"] else ""),
                         fastest_fp32_fps=best32["frames_per_s"]))
    return dict(bench="backbone", rows=rows)


# ----------------------------------------------------------------------------- 3. end to end

def _decoded(paths, vcfg):
    from pipeline.data.video import iter_frames, video_kwargs

    return [f for p in paths for f, _ in iter_frames(p, **video_kwargs(vcfg))]


def bench_e2e(quick: bool = False) -> dict:
    import tempfile

    from pipeline.inference.batch import run_batch
    from pipeline.inference.predict import Predictor

    weiz = ROOT.parent / "shared" / "data" / "weizmann"
    folder = weiz if weiz.is_dir() and not quick else clip_folder(8 if quick else 24)
    rows = []
    for runtime in ("torch", "onnxruntime"):
        pred = Predictor.from_checkpoint(timing_checkpoint(runtime=runtime), DEVICE)
        from pipeline.inference.batch import expand_sources

        paths = expand_sources([str(folder)])
        t0 = time.perf_counter()
        chunks = _decoded(paths, pred.cfg.video)  # backbone-only on the very frames predict will see
        n = sum(len(c) for c in chunks)
        dec_fps = n / (time.perf_counter() - t0)  # decoding alone, one thread: the other bound
        pred.backbone.encode(chunks[0])  # warm-up
        t0 = time.perf_counter()
        for c in chunks:
            pred.backbone.encode(c)
        bb_fps = n / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d:
            s = run_batch(pred, [str(folder)], Path(d) / "p.jsonl", progress=False)
        rows.append(dict(runtime=pred.backbone.numerics, videos=s.videos, frames=s.frames,
                         predict_frames_per_s=s.to_dict()["frames_per_second"], backbone_frames_per_s=round(bb_fps, 1),
                         decode_frames_per_s=round(dec_fps, 1), ratio=round(s.to_dict()["frames_per_second"] / bb_fps, 3)))
    return dict(bench="e2e", folder=str(folder), goal="ratio >= 0.9", rows=rows)


# ----------------------------------------------------------------------------- 4. streaming

def bench_streaming(quick: bool = False) -> dict:
    from pipeline.data.video import load_frames
    from pipeline.inference.predict import StreamingPredictor

    frames, ts = load_frames(str(make_video(BENCH_DIR / "small20.mp4", 20, 320, 240, 25)), sampling="all")
    frames, ts = frames[: 150 if quick else 400], ts[: 150 if quick else 400]
    rows = []
    for runtime in ("torch", "onnxruntime"):
        sp = StreamingPredictor.from_checkpoint(timing_checkpoint(runtime=runtime), DEVICE, every=1)
        single = []
        for f in frames[:5]:
            sp.backbone.encode(f[None])  # warm-up
        for f in frames[:100]:
            t0 = time.perf_counter()
            sp.backbone.encode(f[None])
            single.append((time.perf_counter() - t0) * 1000)
        sp.reset()
        lat = []
        for f, t in zip(frames, ts):
            r = sp.push(f, t)
            lat.append(r.latency_ms)
        lat = np.array(lat[5:])
        b95 = float(np.percentile(single, 95))
        p95 = float(np.percentile(lat, 95))
        rows.append(dict(runtime=sp.backbone.numerics, backbone_ms_p50=round(float(np.median(single)), 2),
                         backbone_ms_p95=round(b95, 2), push_ms_p50=round(float(np.median(lat)), 2),
                         push_ms_p95=round(p95, 2), goal_ms=round(1.2 * b95 + 1, 2), met=p95 <= 1.2 * b95 + 1))
    return dict(bench="streaming", goal="push p95 <= 1.2 x single-frame backbone p95 + 1 ms (like for like)",
                rows=rows)


# ----------------------------------------------------------------------------- 5. training

def bench_training(quick: bool = False) -> dict:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from pipeline.config import Config
    from pipeline.models.heads import RNNHead, build_head
    from pipeline.training.classify import class_weights, train_one_epoch
    from pipeline.training.clips import Clip

    cfg = Config()
    epochs = 5 if quick else 30
    rng = np.random.default_rng(0)
    n, T, D, C = (300 if quick else 1000), 64, 1280, 10  # quick: the test tier runs it
    targets = rng.integers(0, C, n)
    protos = rng.normal(0, 1, (C, D)).astype(np.float32)
    clips = [Clip(f"s{i}", int(t), feats=torch.from_numpy(protos[t] + rng.normal(0, 2, (T, D)).astype(np.float32)))
             for i, t in enumerate(targets)]

    class PackedHead(RNNHead):
        """The same head, but the RNN always runs on packed sequences (the usual PyTorch advice)."""

        def forward(self, x, lengths=None):
            B, T_, _ = x.shape
            lengths = lengths if lengths is not None else torch.full((B,), T_, dtype=torch.long)
            z = self.inp(x)
            h, _ = self.rnn(pack_padded_sequence(z, lengths.cpu(), batch_first=True, enforce_sorted=False))
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=T_)
            from pipeline.models.heads import HeadOutput, length_mask

            m = length_mask(lengths, T_).unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            return HeadOutput(self.classifier(self.drop(pooled)), self.classifier(self.drop(h)))

    rows = []
    for label, make in (("padded + masked (ours)", lambda: build_head(cfg.head, D, C)),
                        ("packed", lambda: PackedHead(D, C, hidden_size=cfg.head.hidden_size, proj_dim=cfg.head.proj_dim))):
        torch.manual_seed(0)
        head = make()
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.train.lr)
        w = class_weights(list(targets), C)
        t0 = time.perf_counter()
        accs = []
        for _ in range(epochs):
            _, acc = train_one_epoch(head, None, clips, opt, cfg, np.random.default_rng(0), w, torch.device("cpu"))
            accs.append(acc)
        el = time.perf_counter() - t0
        rows.append(dict(variant=label, epochs=epochs, seconds=round(el, 2),
                         seconds_for_30_epochs=round(el * 30 / epochs, 2), final_train_top1=round(accs[-1], 3)))
    return dict(bench="training", sequences=n, steps=T, feature_dim=D, max_len=cfg.train.max_len,
                goal="< 30 s for 30 epochs on 2 cores", rows=rows)


# ----------------------------------------------------------------------------- 6. memory

def _peak_rss_mb(cmd: list[str]) -> tuple[float, float, int]:
    """Run cmd as a child; (peak RSS MB, seconds, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_maxrss / 1024, time.perf_counter() - t0, p.returncode


def bench_memory(quick: bool = False) -> dict:
    import tempfile

    hd60 = make_video(BENCH_DIR / "hd60.mp4", 60, 1920, 1080, 30)
    videos = {"60 s 1080p": hd60}
    if not quick:
        videos["3 min 1080p"] = repeat_video(hd60, BENCH_DIR / "hd180.mp4", 3)
        videos["10 min 1080p"] = repeat_video(hd60, BENCH_DIR / "hd600.mp4", 10)
    ckpt = timing_checkpoint(runtime="onnxruntime")
    rows = []
    for label, v in videos.items():
        with tempfile.TemporaryDirectory() as d:
            rss, secs, code = _peak_rss_mb([sys.executable, "-m", "pipeline", "predict", "--checkpoint", str(ckpt),
                                            str(v), "--out", str(Path(d) / "p.jsonl"), "--quiet", "--device", DEVICE])
        rows.append(dict(video=label, peak_rss_mb=round(rss, 1), seconds=round(secs, 1), exit=code))
    out = dict(bench="memory", command="vap predict (backbone.runtime=onnxruntime, 10 fps)", rows=rows)
    if len(rows) == 3:
        out["ratio_10min_to_60s"] = round(rows[2]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)
    return out


# ----------------------------------------------------------------------------- 7. peer

def bench_peer(quick: bool = False) -> dict:
    import torch
    import torchvision

    from pipeline.data.video import load_frames
    from pipeline.inference.predict import Predictor

    video = str(make_video(BENCH_DIR / "small20.mp4", 20, 320, 240, 25))
    seconds = 8.0 if quick else 20.0
    frames, _ = load_frames(video, sampling="all")
    frames = frames[: int(seconds * 25)]
    clips = torch.from_numpy(frames[: len(frames) // 16 * 16]).float().div(255)  # (N, H, W, 3)
    clips = torch.nn.functional.interpolate(clips.permute(0, 3, 1, 2), size=(112, 112), mode="bilinear",
                                            antialias=True)  # (N, 3, 112, 112)
    clips = clips.reshape(-1, 16, 3, 112, 112).permute(0, 2, 1, 3, 4).contiguous()  # (clips, 3, 16, 112, 112)
    rows = []
    from pipeline.models.backbones import resolve_device

    dev = resolve_device(DEVICE)
    clips = clips.to(dev)
    for name in ("r2plus1d_18", "r3d_18"):
        model = getattr(torchvision.models.video, name)(weights=None).eval().to(dev)
        with torch.inference_mode():
            model(clips[:1])
            t0 = time.perf_counter()
            for i in range(0, len(clips), 4):
                model(clips[i:i + 4])
            if dev.type == "cuda":
                torch.cuda.synchronize()
        rows.append(dict(model=name, clips=len(clips), seconds_per_video=round(time.perf_counter() - t0, 3)))
    ours = []
    for runtime in ("torch", "onnxruntime"):
        p = Predictor.from_checkpoint(timing_checkpoint(runtime=runtime), DEVICE)
        sampled, ts = load_frames(video, fps=p.cfg.video.fps, max_side=p.cfg.video.max_side)
        keep = ts < seconds
        p.predict_features(p.backbone.encode(sampled[:40]), ts[:40], 4.0)  # warm-up: every kernel once
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        f = p.backbone.encode(sampled[keep])
        p.predict_features(f, ts[keep], seconds)
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        ours.append(dict(model=f"ours: {p.backbone.name} {p.backbone.numerics} + LSTM at {p.cfg.video.fps:g} fps",
                         frames=int(keep.sum()), seconds_per_video=round(time.perf_counter() - t0, 3)))
    peer_best = min(r["seconds_per_video"] for r in rows)
    for r in ours:
        r["share_of_cheapest_peer"] = round(r["seconds_per_video"] / peer_best, 3)
    return dict(bench="peer", video_seconds=seconds, note="decoding excluded for all (same decoder); peers random-init",
                goal="ours < 1/5 of the peer", rows=rows + ours)


# ----------------------------------------------------------------------------- 8. mirrored training features

def bench_mirror(quick: bool = False) -> dict:
    """What flip augmentation's extraction costs: a training folder's features with the default views and
    backbone (runtime auto), as they are and mirrored - two passes (decode, track and render each video twice, as
    before) against one (cache.extract_versions: one decode, both versions' images in one backbone batch). Each
    into a fresh cache, best of 2 (1 with --quick); the entries must be the same numbers."""
    import tempfile

    from pipeline.config import Config
    from pipeline.models.cache import FeatureCache, extract, extract_versions
    from pipeline.models.runtime import backbone_from_config

    ut = ROOT.parent / "shared" / "data" / "ut_interaction_set1"
    folder = ut if ut.is_dir() and not quick else clip_folder(2 if quick else 8)
    paths = sorted(str(p) for p in folder.rglob("*.avi"))[:12] if folder == ut else \
        [str(p) for p in sorted(folder.glob("*.mp4"))[:2 if quick else 8]]
    cfg = Config()
    bb = backbone_from_config(cfg.backbone)
    kw = dict(progress=False, views=cfg.views, detector=cfg.detector)
    best = {"two passes": float("inf"), "one decode": float("inf")}
    keys = {}
    with tempfile.TemporaryDirectory() as d:
        extract(paths[:1], bb, cfg.video, FeatureCache(Path(d) / "warm-up"), **kw)
        for r in range(1 if quick else 2):
            for name in best:
                cache = FeatureCache(Path(d) / f"{name}-{r}")
                t0 = time.perf_counter()
                if name == "two passes":
                    res = (extract(paths, bb, cfg.video, cache, **kw), extract(paths, bb, cfg.video, cache, flip=True, **kw))
                else:
                    out = extract_versions({False: paths, True: paths}, bb, cfg.video, cache, **kw)
                    res = (out[False], out[True])
                best[name] = min(best[name], time.perf_counter() - t0)
                keys[name] = (cache, [k for x in res for ks in x.keys.values() for k in ks])
        (c1, k1), (c2, k2) = keys["two passes"], keys["one decode"]
        same = k1 == k2 and all(np.array_equal(c1.load(k)[0], c2.load(k)[0]) for k in k1)
    return dict(bench="mirror", videos=len(paths), folder=str(folder), backbone=bb.name,
                numerics=getattr(bb, "numerics", "torch-fp32"), streams=list(cfg.views.streams),
                rows=[dict(variant=k, seconds=round(v, 2)) for k, v in best.items()],
                ratio=round(best["one decode"] / best["two passes"], 3), identical_features=same,
                goal="one decode < two passes, identical features")


BENCHES = dict(decode=bench_decode, backbone=bench_backbone, e2e=bench_e2e, streaming=bench_streaming,
               training=bench_training, memory=bench_memory, peer=bench_peer, mirror=bench_mirror)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", choices=sorted(BENCHES))
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    ap.add_argument("--device", default=None, help="auto (default) | cpu | cuda")
    ap.add_argument("--all-backbones", action="store_true", help="backbone: every registered backbone, not the "
                                                                 "default six")
    args = ap.parse_args()
    if args.all_backbones:
        os.environ["VAP_BENCH_ALL_BACKBONES"] = "1"
    global DEVICE
    DEVICE = args.device or DEVICE
    t0 = time.time()
    out = dict(machine=describe())  # first: a figure means little without the CPU that made it
    out.update(BENCHES[args.bench](args.quick), seconds=round(time.time() - t0, 1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
