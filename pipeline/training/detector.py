"""Train the offline default person detector: a small Ultralytics YOLO11 pose model (boxes + COCO's 17
keypoints of class `person`) learned from the synthetic multi-person scenes of data/people.py, whose
boxes and joints the generator knows. No download, no real footage: the machines that build vap reach
only the package registries, and the tests and the demo must still run Ultralytics' real predict and
track code. It knows stick figures, not real people: on real video use `detector.weights=yolo11n-pose.pt`
(or any Ultralytics detect/pose weights).

    python -m pipeline.training.detector --out pipeline/models/weights/people-pose.pt

rebuilds the shipped file (about 8 minutes on 2 CPU cores). The network is YOLO11-pose narrowed to a
width of 1/8 (yolo11n's is 1/4) with at most 256 channels: under 1 MB, a few ms per frame on a CPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.data.synthetic import COCO_FLIP

# depth, width, max channels: yolo11n is [0.50, 0.25, 1024]; stick figures need far less
SCALE = [0.33, 0.125, 256]


def _overlapping(people, i: int, min_iou: float = 0.05) -> bool:
    """True when two people's boxes overlap in frame i (a crossing)."""
    from pipeline.training.people_metrics import iou

    b = np.array([p.boxes[i] for p in people])
    m = iou(b, b) - np.eye(len(b))
    return bool((m > min_iou).any())


def write_dataset(root: Path, videos: int, seed: int, every: int = 8, crossings: int = 0) -> Path:
    """Ultralytics pose dataset (images/{train,val}, labels/{train,val}, data.yaml) of every `every`-th
    frame of synthetic people videos with 1-3 figures at several frame sizes, and of `crossings` more scenes
    of 2-3 people of which only the frames where two of them overlap are kept (every 3rd): the frames where
    one box for two people, or none, loses a track. Returns data.yaml."""
    import cv2

    from pipeline.data.people import render_people

    for split, n in (("train", videos), ("val", max(4, videos // 8))):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        k = 0
        extra = crossings if split == "train" else crossings // 8
        for v in range(n + extra):
            rng = np.random.default_rng([seed, v, split == "val"])
            w, h = [(320, 180), (320, 240), (256, 256), (400, 224)][v % 4]
            cross = v >= n  # a crossing scene: 4 s, only the frames with people overlapping
            frames, people = render_people(rng, people=2 + v % 2 if cross else 1 + v % 3, seconds=4.0 if cross else 2.0,
                                           width=w, height=h, crossing=cross or v % 2 == 0)
            step = 3 if cross else every
            for i in range(int(rng.integers(0, step)), len(frames), step):
                if cross and not _overlapping(people, i):
                    continue
                cv2.imwrite(str(root / "images" / split / f"{k:05d}.jpg"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
                lines = []
                for p in people:
                    x1, y1, x2, y2 = p.boxes[i]
                    kp = np.clip(p.keypoints[i] / [w, h], 0, 1)  # (17, 2) normalised
                    kps = " ".join(f"{x:.5f} {y:.5f} 2" for x, y in kp)
                    lines.append(f"0 {(x1 + x2) / 2 / w:.5f} {(y1 + y2) / 2 / h:.5f} {(x2 - x1) / w:.5f} "
                                 f"{(y2 - y1) / h:.5f} {kps}")
                (root / "labels" / split / f"{k:05d}.txt").write_text("\n".join(lines) + "\n")
                k += 1
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nkpt_shape: [17, 3]\n"
                    f"flip_idx: {COCO_FLIP}\nnames:\n  0: person\n")
    return data


def model_yaml(path: Path) -> Path:
    """Ultralytics' yolo11-pose.yaml with one class and the narrow scale."""
    import ultralytics
    import yaml

    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11-pose.yaml").read_text())
    cfg.update(nc=1, kpt_shape=[17, 3], scales={"n": SCALE})
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_person_detector(out: str | Path, videos: int = 120, epochs: int = 40, imgsz: int = 320, seed: int = 0,
                          workdir: str | Path | None = None, init: str | Path | None = None,
                          crossings: int = 0) -> dict:
    """Train and copy the best weights to `out` (a normal Ultralytics .pt). Returns the validation metrics.
    init: weights to start from (a second round on fresh scenes: another seed), else a fresh network.
    crossings: extra scenes seen only while people overlap (write_dataset)."""
    os.environ.setdefault("YOLO_OFFLINE", "True")  # never reach for the network (fonts, weights, hub)
    from ultralytics import YOLO

    out = Path(out)
    work = Path(workdir or tempfile.mkdtemp(prefix="vap-detector-"))
    data = write_dataset(work / "data", videos, seed, crossings=crossings)
    t0 = time.time()
    # "n" in the file name selects the scale; a fresh model: nothing pretrained to download
    model = YOLO(str(model_yaml(work / "yolo11n-people-pose.yaml")))
    # pretrained=PATH loads those weights into the fresh network (a .pt passed as the model did not, here)
    model.train(data=str(data), imgsz=imgsz, epochs=epochs, batch=16, device="cpu", workers=0, plots=False,
                amp=False, pretrained=str(init) if init else False, project=str(work / "runs"), name="people",
                exist_ok=True,
                verbose=False, mosaic=0.5, patience=0, seed=seed, deterministic=True)
    best = work / "runs" / "people" / "weights" / "best.pt"
    metrics = YOLO(str(best)).val(data=str(data), imgsz=imgsz, device="cpu", workers=0, plots=False, verbose=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    shutil.copyfile(best, tmp)
    os.replace(tmp, out)
    return dict(seconds=round(time.time() - t0, 1), box_map50=round(float(metrics.box.map50), 4),
                box_map=round(float(metrics.box.map), 4), pose_map50=round(float(metrics.pose.map50), 4),
                pose_map=round(float(metrics.pose.map), 4), bytes=out.stat().st_size)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="where to write the weights (.pt)")
    ap.add_argument("--videos", type=int, default=120, help="synthetic training videos (2 s each)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the dataset and Ultralytics' run here")
    ap.add_argument("--init", default=None, help="start from these weights (a second round: use another --seed)")
    ap.add_argument("--crossings", type=int, default=0, help="extra scenes kept only while people overlap")
    a = ap.parse_args(argv)
    print(train_person_detector(a.out, a.videos, a.epochs, a.imgsz, a.seed, a.workdir, a.init, a.crossings),
          flush=True)


if __name__ == "__main__":
    main()
