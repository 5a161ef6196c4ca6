"""Datasets of labelled clips: class folders, CSV lists, UCF101/HMDB51-style split files.

Each loader returns a `Dataset`: a list of `Sample(path, label)` and the sorted class names.
Paths are absolute. Bad input raises DataError with one line naming the file and the problem.
"""
from __future__ import annotations

import csv
import logging
import random
import re
from collections import defaultdict
from pathlib import Path

from pipeline.data.samples import Dataset, Sample  # noqa: F401 (importable from here as before)
from pipeline.errors import DataError  # noqa: F401 (importable from here as before)
from pipeline.io import atomic_write_csv

log = logging.getLogger("vap.data")

DEFAULT_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def is_video(path: Path, extensions=DEFAULT_EXTENSIONS) -> bool:
    return path.is_file() and path.suffix.lower() in {e.lower() for e in extensions}


# ----------------------------------------------------------------------------- class folders

def load_class_folders(root: Path, extensions=DEFAULT_EXTENSIONS) -> Dataset:
    """root/<class>/<video> (videos may sit in sub-folders of a class folder)."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders found (expected {root}/<class>/<video>)")
    samples = []
    for d in class_dirs:
        videos = sorted(p for p in d.rglob("*") if is_video(p, extensions))
        if not videos:
            raise DataError(f"{d}: class folder '{d.name}' has no video files "
                            f"(extensions: {' '.join(extensions)})")
        samples += [Sample(str(p.resolve()), d.name) for p in videos]
    return Dataset(samples, [d.name for d in class_dirs], str(root))


# ----------------------------------------------------------------------------- CSV / list files

CSV_COLUMNS = ("path", "label", "split")


def _resolve(base: Path, rel: str, where: str) -> str:
    p = Path(rel).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        raise DataError(f"{where}: video not found: {p}")
    return str(p.resolve())


def load_csv(path: Path, split: str | None = None) -> Dataset:
    """`path,label[,split]` with or without a header; also MMAction2-style `path label` lines.

    Relative paths are relative to the CSV file's folder. `split` keeps only rows of that split.
    """
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{path}: empty list file")
    base = path.parent
    rows: list[tuple[int, list[str]]] = []
    if "," in lines[0] or path.suffix.lower() == ".csv":
        reader = list(csv.reader(lines))
        header = [h.strip().lower() for h in reader[0]]
        if "path" in header or "label" in header:
            unknown = [h for h in header if h not in CSV_COLUMNS]
            if unknown:
                raise DataError(f"{path}: unknown column(s) {unknown}; expected path,label[,split]")
            if "path" not in header or "label" not in header:
                raise DataError(f"{path}: header must name the columns 'path' and 'label'")
            cols = [header.index(c) if c in header else None for c in CSV_COLUMNS]
            body = reader[1:]
            start = 2
        else:
            cols, body, start = [0, 1, 2], reader, 1
        for n, r in enumerate(body, start):
            if len(r) < 2 or len(r) > 3 or (len(r) == 3 and cols[2] is None):
                raise DataError(f"{path}:{n}: expected path,label[,split], got {len(r)} fields")
            rows.append((n, [r[cols[0]].strip(), r[cols[1]].strip(),
                             r[cols[2]].strip() if cols[2] is not None and len(r) > cols[2] else ""]))
    else:  # MMAction2 / UCF101 style: "path label" separated by whitespace
        for n, ln in enumerate(lines, 1):
            parts = ln.split()
            if len(parts) < 2:
                raise DataError(f"{path}:{n}: expected 'path label', got {ln!r}")
            rows.append((n, [" ".join(parts[:-1]), parts[-1], ""]))
    samples, split_of = [], {}
    for n, (rel, label, sp) in rows:
        if not label:
            raise DataError(f"{path}:{n}: empty label")
        if split and sp != split:
            continue
        p = _resolve(base, rel, f"{path}:{n}")
        samples.append(Sample(p, label))
        if sp:
            split_of[p] = sp
    if not samples:
        raise DataError(f"{path}: no rows" + (f" with split '{split}'" if split else ""))
    return Dataset(samples, sorted({s.label for s in samples}), str(path), split_of)


def csv_splits(path: Path) -> set[str]:
    """The split names a CSV list uses (empty when it has no split column or cannot be read)."""
    try:
        return set(load_csv(path).split_of.values())
    except (DataError, OSError, UnicodeDecodeError):
        return set()


# ----------------------------------------------------------------------------- UCF101-style splits

def find_split_files(root: Path) -> Path | None:
    """The folder holding classInd.txt inside root (root itself or one level down), if any."""
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (d / "classInd.txt").is_file():
            return d
    return None


def load_ucf_split(root: Path, list_dir: Path, which: str, split: int = 1) -> Dataset:
    """UCF101 split files: classInd.txt ('1 ApplyEyeMakeup'), trainlist0N.txt, testlist0N.txt.

    Video paths in the lists ('ApplyEyeMakeup/v_x.avi [label]') are relative to `root`.
    """
    classes = {}
    for n, ln in enumerate((list_dir / "classInd.txt").read_text().splitlines(), 1):
        if ln.strip():
            parts = ln.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise DataError(f"{list_dir / 'classInd.txt'}:{n}: expected 'index name', got {ln!r}")
            classes[int(parts[0])] = parts[1]
    names = [classes[k] for k in sorted(classes)]
    lst = list_dir / f"{which}list{split:02d}.txt"
    if not lst.is_file():
        raise DataError(f"{lst}: split file not found")
    samples = []
    for n, ln in enumerate(lst.read_text().splitlines(), 1):
        if not ln.strip():
            continue
        rel = ln.split()[0]
        label = rel.replace("\\", "/").split("/")[0]
        if label not in names:
            raise DataError(f"{lst}:{n}: class '{label}' is not in classInd.txt")
        samples.append(Sample(_resolve(root, rel, f"{lst}:{n}"), label))
    return Dataset(samples, names, str(lst))


# ----------------------------------------------------------------------------- entry point

def load_dataset(spec: str | Path, role: str = "train", extensions=DEFAULT_EXTENSIONS,
                 ucf_split: int = 1) -> Dataset:
    """Load any supported format. role: train | val | eval (which split of a split-aware source)."""
    path = Path(spec).expanduser()
    if not str(spec):
        raise DataError("no dataset given (use --data PATH)")
    if not path.exists():
        raise DataError(f"{path}: dataset path not found")
    if path.is_file():
        from pipeline.data.tracks import is_people_file, load_people, people_splits

        people = is_people_file(path)
        load = load_people if people else load_csv
        full = load(path)  # validates every row, whatever the role
        splits = people_splits(path) if people else set(full.split_of.values())
        if not splits:
            return full
        wanted = {"train": ["train"], "val": ["val", "test"], "eval": ["test", "val"]}[role]
        split = next((s for s in wanted if s in splits), None)
        if split is None:
            raise DataError(f"{path}: no rows for role '{role}' (splits present: {sorted(splits)})")
        return load(path, split)
    list_dir = find_split_files(path)
    if list_dir is not None:
        return load_ucf_split(path, list_dir, "train" if role == "train" else "test", ucf_split)
    return load_class_folders(path, extensions)


def has_own_val(spec: str | Path) -> bool:
    """True when a training source carries its own validation part (split files, split column)."""
    path = Path(spec)
    if path.is_file():
        from pipeline.data.tracks import is_people_file, people_splits

        return bool((people_splits(path) if is_people_file(path) else csv_splits(path)) & {"val", "test"})
    return path.is_dir() and find_split_files(path) is not None


def check_labels(train: Dataset, other: Dataset, what: str = "validation") -> None:
    missing = sorted({s.label for s in other.samples} - set(train.classes))
    if missing:
        raise DataError(f"{other.source}: {what} label(s) {missing} not among the training classes "
                        f"{train.classes}")


def group_of(path: str, pattern: str) -> str:
    m = re.search(pattern, Path(path).name)
    return (m.group(1) if m and m.groups() else m.group(0)) if m else Path(path).name


def groups_of(paths: list[str], pattern: str, source: str = "") -> list[str]:
    """group_of each path, checking the pattern: one that matches no file name is an error (every file
    would be its own group, so validation would share people with training, silently); files it misses
    among others are each their own group, with a warning naming how many."""
    missed = [p for p in paths if not re.search(pattern, Path(p).name)]
    if paths and len(missed) == len(paths):
        raise DataError(f"{source + ': ' if source else ''}data.group_by='{pattern}' matches none of the "
                        f"{len(paths)} file names (e.g. '{Path(paths[0]).name}'); its first group should name "
                        f"the person or camera of each file")
    if missed:
        log.warning("data.group_by='%s' does not match %d of %d file names (e.g. '%s'): each is a group of its own",
                    pattern, len(missed), len(paths), Path(missed[0]).name)
    return [group_of(p, pattern) for p in paths]


def hold_out(keys, fraction: float, seed: int) -> set[str]:
    """The keys (groups, or videos) of a reproducible validation share: a seeded shuffle of the distinct
    keys, round(n * fraction) of them, at least one and never all. Needs at least 2 distinct keys."""
    uniq = sorted(set(keys))
    random.Random(seed).shuffle(uniq)
    return set(uniq[:min(len(uniq) - 1, max(1, round(len(uniq) * fraction)))])


def stratified_split(ds: Dataset, val_fraction: float, seed: int = 0,
                     group_by: str = "") -> tuple[Dataset, Dataset]:
    """Reproducible train/val split: val_fraction of each class, or of the groups when group_by is set.

    With group_by (a regex whose first group names e.g. the actor), whole groups go to one side so
    that validation measures generalisation to unseen actors. Per-person rows (several people and actions
    in one video) are split by video without group_by: no video has people on both sides.
    """
    val_paths: set[str] = set()
    by_video = not group_by and any(s.person is not None for s in ds.samples)
    if group_by or by_video:
        paths = [s.path for s in ds.samples]
        groups = dict(zip(paths, groups_of(paths, group_by, ds.source) if group_by else paths))
        if len(set(groups.values())) < 2 and by_video:
            raise DataError(f"{ds.source}: the per-person rows name one video; validation holds out whole videos, "
                            f"so give at least 2 (or pass --val)")
        if len(set(groups.values())) < 2:
            raise DataError(f"data.group_by='{group_by}' finds {len(set(groups.values()))} group(s); need at least 2")
        held = hold_out(groups.values(), val_fraction, seed)
        val_paths = {p for p, g in groups.items() if g in held}
    else:
        rng = random.Random(seed)
        by_class = defaultdict(list)
        for s in ds.samples:
            by_class[s.label].append(s.path)
        for label in sorted(by_class):
            paths = sorted(by_class[label])
            rng.shuffle(paths)
            n_val = min(len(paths) - 1, max(1, round(len(paths) * val_fraction))) if len(paths) > 1 else 0
            val_paths.update(paths[:n_val])
    train = [s for s in ds.samples if s.path not in val_paths]
    val = [s for s in ds.samples if s.path in val_paths]
    return (Dataset(train, ds.classes, ds.source + " (train split)"),
            Dataset(val, ds.classes, ds.source + " (val split)"))


def write_split(path: Path, train: Dataset, val: Dataset) -> None:
    """path,label,split per sample; per-person rows also say which person and when (track,start,end)."""
    people = any(s.person is not None for s in train.samples + val.samples)
    rows = [[s.path, s.label, sp] + ([s.person.track, f"{s.person.start:g}", f"{s.person.end:g}"] if people else [])
            for sp, d in (("train", train), ("val", val)) for s in d.samples]
    atomic_write_csv(path, ["path", "label", "split"] + (["track", "start", "end"] if people else []), rows)
