"""The camera fit of views.stabilize (pipeline.data.views.camera_motion) against a known camera path.

Real clips (every 4th of UT-Interaction set 1, every 9th of Weizmann) are filmed again by the hand-held camera of
bench/accuracy_folds.py (`handheld`: a smooth random sway, turn and 1.12x zoom whose map for every frame is
known), then sampled at ~10 fps as the views sample them. For each fit setting:

    ms_per_fit           mean time of one fit (grey frames at the 160-px motion scale)
    missed               moving steps (a true corner move >= STILL_PX) the fit refused or called still
    p90_corner_error_px  90th percentile, over moving steps, of the largest corner error (a refused fit: the move)
    fires_on_tripod      steps of the clips as filmed (a tripod) where the fit reports a move
    region_side_change   mean |crop side, hand-held - as filmed| / the frame's shorter side (views.MotionTracker)
    region_share_ratio   median moving share of the frame, hand-held / as filmed (1: the sway adds no motion)

    python bench/camera_fit.py [--every-ut 4] [--every-weizmann 9]    # JSON on stdout

Settings: `default` (the views' own), `first` (the fit shipped first: 300 points 1/40 of the side apart, a
15-px window, half of the points to agree) and two between them.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy_folds import handheld  # noqa: E402

from pipeline.capabilities import describe  # noqa: E402
from pipeline.config import ViewsConfig  # noqa: E402
from pipeline.data import views  # noqa: E402
from pipeline.data.datasets import load_dataset  # noqa: E402
from pipeline.data.video import frame_rate, load_frames  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SETTINGS = {
    "default": {},
    "first": dict(points=300, window=15, agree=0.5, spacing=40),
    "first, 40 % to agree": dict(points=300, window=15, agree=0.4, spacing=40),
    "150 points, 11-px window": dict(points=150, window=11, agree=0.4, spacing=16),
}


def grey_frames(frames: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Grey frames as MotionTracker compares them (views.motion_grey) and their scale."""
    side = ViewsConfig().motion_side
    return [views.motion_grey(f, side)[0] for f in frames], views.motion_grey(frames[0], side)[1]


def fit_errors(shaky: np.ndarray, maps: list, fit=views.camera_motion) -> tuple[int, list[float], float]:
    """The fit on consecutive frames of a hand-held copy against the camera's known maps (handheld's): (moving
    steps the fit found, the largest corner error of each moving step in pixels at the motion scale - a refused
    fit counts its whole move -, seconds spent fitting). A step is moving when a corner moves STILL_PX."""
    g, s = grey_frames(shaky)
    scale = np.diag([s, s, 1.0])  # frame pixels -> motion-scale pixels
    h, w = g[0].shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    found, errors, seconds = 0, [], 0.0
    for i in range(len(g) - 1):
        true = scale @ np.vstack([maps[i + 1], [0, 0, 1]]) @ np.linalg.inv(np.vstack([maps[i], [0, 0, 1]])) \
            @ np.linalg.inv(scale)
        move = corners @ true[:2].T - corners[:, :2]
        t = time.perf_counter()
        A = fit(g[i], g[i + 1])
        seconds += time.perf_counter() - t
        if np.abs(move).max() < views.STILL_PX:
            continue
        found += A is not None
        errors.append(np.abs(move).max() if A is None else np.abs(corners @ A.T - corners[:, :2] - move).max())
    return found, errors, seconds


def _region(frames: np.ndarray, fit) -> tuple[float, float]:
    """Mean moving share of the frame and mean crop side / the shorter side, with `fit` as the camera fit."""
    orig, views.camera_motion = views.camera_motion, fit
    try:
        tr, share, side = views.MotionTracker(ViewsConfig()), [], []
        for f in frames:
            box = tr.update(f)
            share.append(np.maximum.reduce(tr.masks).mean())
            side.append(box[2] / min(f.shape[:2]) if box else 1.0)
    finally:
        views.camera_motion = orig
    return float(np.mean(share)), float(np.mean(side))


def clips(every_ut: int, every_weizmann: int) -> list[tuple[str, np.ndarray, np.ndarray, list]]:
    """(name, as filmed, hand-held, the hand-held maps) of each clip, sampled at ~10 fps."""
    out = []
    for folder, every in (("ut_interaction_set1", every_ut), ("weizmann", every_weizmann)):
        if not (SHARED / folder).is_dir() or not every:
            continue
        for smp in load_dataset(SHARED / folder).samples[::every]:
            full, ts = load_frames(smp.path, sampling="all")
            fps = frame_rate(ts, 25.0)
            shaky, maps = handheld(full, fps, seed=zlib.crc32(full[0].tobytes()[:4096]))
            step = max(1, round(fps / 10))
            out.append((Path(smp.path).name, full[::step], shaky[::step], maps[::step]))
    return out


def measure(items, setting: dict) -> dict:
    fit = functools.partial(views.camera_motion, **setting)
    seconds, fits, found, errors, fires, side_change, share_ratio = 0.0, 0, 0, [], 0, [], []
    for _, still, shaky, maps in items:
        f, e, sec = fit_errors(shaky, maps, fit)
        found, errors, seconds, fits = found + f, errors + e, seconds + sec, fits + len(shaky) - 1
        gs = grey_frames(still)[0]
        fires += sum(fit(a, b) is not None for a, b in zip(gs, gs[1:]))
        a, b = _region(still, fit), _region(shaky, fit)
        side_change.append(abs(b[1] - a[1]))
        share_ratio.append(b[0] / max(a[0], 1e-3))
    return dict(ms_per_fit=round(1000 * seconds / fits, 3), moving_steps=len(errors), missed=len(errors) - found,
                p90_corner_error_px=round(float(np.percentile(errors, 90)), 3),
                median_corner_error_px=round(float(np.median(errors)), 3),
                fires_on_tripod=fires, region_side_change=round(float(np.mean(side_change)), 4),
                region_share_ratio=round(float(np.median(share_ratio)), 3))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every-ut", type=int, default=4, help="every n-th UT-Interaction clip (0: none)")
    ap.add_argument("--every-weizmann", type=int, default=9, help="every n-th Weizmann clip (0: none)")
    args = ap.parse_args(argv)
    items = clips(args.every_ut, args.every_weizmann)
    if not items:
        print(json.dumps(dict(skipped=f"no clips under {SHARED}")))
        return {}
    out = dict(machine=describe(), benchmark="camera_fit", clips=len(items),
               default=dict(points=views.CAMERA_POINTS, window=views.CAMERA_WINDOW, agree=views.CAMERA_AGREE,
                            spacing=views.CAMERA_SPACING),
               settings={name: dict(setting, **measure(items, setting)) for name, setting in SETTINGS.items()})
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
