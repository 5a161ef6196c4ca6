import pytest

from pipeline.data.datasets import DataError, check_labels, has_own_val, load_dataset, stratified_split

from conftest import counter_frames, write_video


@pytest.fixture
def folder(tmp_path):
    """root/<class>/<video>: 3 classes x 4 tiny real clips, actor name in the file name."""
    root = tmp_path / "videos"
    clip = counter_frames(5, 16, 16)
    for c in ("run", "sit", "wave"):
        for actor in ("ann", "bob", "cid", "dan"):
            write_video(root / c / f"{actor}_{c}.avi", clip)
    (root / "wave" / "notes.txt").write_text("not a video")
    return root


def test_class_folders(folder):
    ds = load_dataset(folder)
    assert ds.classes == ["run", "sit", "wave"] and len(ds) == 12
    assert all(s.path.endswith(".avi") for s in ds.samples)


def test_empty_class_folder_is_named(folder):
    (folder / "jump").mkdir()
    with pytest.raises(DataError, match=r"jump.*has no video files"):
        load_dataset(folder)


def test_csv_with_header_relative_paths_and_split(folder):
    csv = folder / "list.csv"
    csv.write_text("path,label,split\nrun/ann_run.avi,run,train\nsit/ann_sit.avi,sit,train\n"
                   "run/bob_run.avi,run,test\nsit/bob_sit.avi,sit,val\n")
    train = load_dataset(csv, "train")
    assert [s.label for s in train.samples] == ["run", "sit"]
    assert str(folder / "run" / "ann_run.avi") == train.samples[0].path
    assert [s.label for s in load_dataset(csv, "eval").samples] == ["run"]  # test preferred for eval
    assert [s.label for s in load_dataset(csv, "val").samples] == ["sit"]
    assert has_own_val(csv)


def test_csv_without_header_and_mmaction_lines(folder):
    a = folder / "a.csv"
    a.write_text(f"{folder}/run/ann_run.avi,run\n{folder}/sit/ann_sit.avi,sit\n")
    assert load_dataset(a).classes == ["run", "sit"]
    b = folder / "b.txt"
    b.write_text("run/ann_run.avi 0\nsit/ann_sit.avi 1\n")
    assert load_dataset(b).classes == ["0", "1"]


@pytest.mark.parametrize("content, fragment", [
    ("path,label,camera\nrun/ann_run.avi,run,c1\n", "unknown column(s) ['camera']"),
    ("path,label\nrun/missing.avi,run\n", "video not found"),
    ("path,label\nrun/ann_run.avi,\n", "empty label"),
    ("", "empty list file"),
])
def test_bad_csv_errors_name_the_file(folder, content, fragment):
    csv = folder / "bad.csv"
    csv.write_text(content)
    with pytest.raises(DataError) as e:
        load_dataset(csv)
    assert fragment in str(e.value) and str(csv) in str(e.value)


def test_ucf101_split_files(folder):
    (folder / "classInd.txt").write_text("1 run\n2 sit\n3 wave\n")
    (folder / "trainlist01.txt").write_text("run/ann_run.avi 1\nsit/ann_sit.avi 2\nwave/ann_wave.avi 3\n")
    (folder / "testlist01.txt").write_text("run/bob_run.avi\nwave/bob_wave.avi\n")
    tr, te = load_dataset(folder, "train"), load_dataset(folder, "eval")
    assert tr.classes == ["run", "sit", "wave"] and len(tr) == 3 and len(te) == 2
    assert has_own_val(folder)


def test_missing_path_and_unknown_val_label(folder, tmp_path):
    with pytest.raises(DataError, match="dataset path not found"):
        load_dataset(tmp_path / "nope")
    val = tmp_path / "val.csv"
    val.write_text(f"path,label\n{folder}/run/ann_run.avi,jump\n")
    with pytest.raises(DataError, match=r"label\(s\) \['jump'\] not among the training classes"):
        check_labels(load_dataset(folder), load_dataset(val))


def test_stratified_split_is_reproducible_and_group_disjoint(folder):
    ds = load_dataset(folder)
    a_tr, a_val = stratified_split(ds, 0.25, seed=3)
    b_tr, b_val = stratified_split(ds, 0.25, seed=3)
    assert [s.path for s in a_val.samples] == [s.path for s in b_val.samples]
    assert sorted(s.label for s in a_val.samples) == ["run", "sit", "wave"]  # one per class
    g_tr, g_val = stratified_split(ds, 0.25, seed=0, group_by=r"^([a-z]+)_")
    actors = lambda d: {s.path.rsplit("/", 1)[1].split("_")[0] for s in d.samples}  # noqa: E731
    assert len(actors(g_val)) == 1 and not actors(g_tr) & actors(g_val) and len(g_val) == 3


def test_a_group_regex_that_matches_no_file_name_is_an_error(folder, tmp_path, caplog):
    """data.group_by that matches none of the names would make every file its own group - validation
    sharing people with training without a word (a clip regex given for composed sequences did that):
    one-line error through vap train, for clips and for annotated videos; a partial match warns."""
    from conftest import run_vap

    seq = tmp_path / "seq"
    for name in ("ann_seq_000.avi", "bob_seq_001.avi"):
        write_video(seq / name, counter_frames(20, 16, 16))
    ann = seq / "annotations.csv"
    ann.write_text("video,start,end,label\n" + "".join(f"{seq / n},0,0.4,run\n{seq / n},0.4,0.8,sit\n"
                                                         for n in ("ann_seq_000.avi", "bob_seq_001.avi")))
    for data in (folder, ann):
        code, _, err = run_vap("train", "--data", data, "--out", tmp_path / "r", "--quiet", r"data.group_by=^\d+_(\d+)_",
                               "backbone.name=tiny_cnn", "backbone.input_size=64")
        assert code == 2 and "Traceback" not in err, err
        assert "data.group_by='^\\d+_(\\d+)_' matches none of the" in err.strip().splitlines()[-1], err
    import logging

    ds = load_dataset(folder)
    # on the logger itself: the in-process CLI above replaced the root handlers (basicConfig(force=True))
    logging.getLogger("vap.data").addHandler(caplog.handler)
    try:
        stratified_split(ds, 0.25, seed=0, group_by=r"^(ann)_")  # ann's clips match, the others do not
    finally:
        logging.getLogger("vap.data").removeHandler(caplog.handler)
    assert f"does not match {len(ds) - 3} of {len(ds)} file names" in caplog.text

