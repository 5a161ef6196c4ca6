import numpy as np

from pipeline.data.synthetic import ACTIONS, make_dataset, render_clip
from pipeline.data.video import load_frames, probe


def test_same_seed_same_pixels_and_classes_move_differently():
    a = render_clip("wave", np.random.default_rng(5))
    b = render_clip("wave", np.random.default_rng(5))
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape[1:] == (120, 160, 3)
    motion = {act: np.abs(np.diff(render_clip(act, np.random.default_rng(1)).astype(np.int16), axis=0)).mean()
              for act in ACTIONS}
    assert all(m > 0.5 for m in motion.values())  # every action moves


def test_walk_left_and_right_travel_in_opposite_directions():
    def centre_x(frames):
        diff = np.abs(frames.astype(np.int16) - np.median(frames, axis=0)).sum(-1)  # figure vs background
        xs = [np.average(np.arange(d.shape[1]), weights=d.sum(0) + 1e-6) for d in diff]
        return xs[-1] - xs[0]
    assert centre_x(render_clip("walk_right", np.random.default_rng(2))) > 5
    assert centre_x(render_clip("walk_left", np.random.default_rng(2))) < -5


def test_make_dataset_writes_decodable_class_folders(tmp_path):
    root = make_dataset(tmp_path / "s", 2, actions=("jump", "squat"), seed=0)
    files = sorted(root.glob("*/*.mp4"))
    assert [f.parent.name for f in files] == ["jump", "jump", "squat", "squat"]
    info = probe(files[0])
    assert info.fps == 25.0 and 50 <= info.num_frames <= 75
    frames, ts = load_frames(files[0], fps=10)
    assert frames.shape[1:] == (120, 160, 3) and len(ts) >= 20
