"""Per-person annotations of videos with several people: who does what, when and where.

One row per action of one person (a trimmed clip of that person), in a CSV whose header starts with
video,start,end,label and names where the person is in one of two ways:

    video,start,end,label,track[,split]            the person's boxes over time are in boxes.csv beside
                                                   this file: video,t,track,x1,y1,x2,y2 (a frame column
                                                   may be there too and is ignored; any number of boxes,
                                                   every frame or a few per second: the box at each
                                                   sampled frame is interpolated between the nearest two)
    video,start,end,label[,track],x1,y1,x2,y2[,split]   one box for the whole row (a person who stays
                                                   where they are); rows may mix both ways: a row with
                                                   empty x1..y2 takes its track's boxes from boxes.csv

Seconds for start, end and t; boxes in the video's own pixels (x1,y1 top left, x2,y2 bottom right).
Video paths are relative to the CSV's folder. `vap synth --people` writes people.csv and boxes.csv in
the first form. For classification each row becomes a Sample with a PersonSpan: training renders the crop
and motion views around the person's box (views.PersonBox, the framing per-person prediction uses around
tracked boxes) and caches the features per row. For the next-event task (load_person_timelines) the rows
of one person (a track of a video; a row without a track is a person of its own) are that person's
timeline, encoded from its first row's start to its last row's end. Bad rows raise DataError naming the
file, the row and the problem.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.samples import Dataset, Sample
from pipeline.data.segments import AnnotatedVideo, Annotations, Segment, check_order, load_annotations
from pipeline.errors import DataError

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
COLUMNS = ("video", "start", "end", "label", "track", *BOX_COLUMNS, "split")
BOXES_FILE = "boxes.csv"


@dataclass
class PersonSpan:
    """Where one person is during one annotated action: boxes (N, 4) at times (N,) seconds, in the video's
    own pixels; box_at(t) interpolates between them (and holds the first and last box outside them)."""
    track: str
    start: float
    end: float
    times: np.ndarray   # (N,) increasing
    boxes: np.ndarray   # (N, 4) x1, y1, x2, y2
    row: str = ""       # file:line, for messages

    def box_at(self, t: float) -> np.ndarray:
        return np.array([np.interp(t, self.times, self.boxes[:, j]) for j in range(4)], np.float32)

    @property
    def ident(self) -> str:
        """What the person's features depend on besides the video: the cache tells two rows apart by it."""
        key = f"{self.track}|{self.start:.4f}|{self.end:.4f}|" + np.round(self.boxes, 2).tobytes().hex() \
            + np.round(self.times, 4).tobytes().hex()
        return hashlib.sha1(key.encode()).hexdigest()[:16]


def _header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        first = next(csv.reader(f), [])
    return [h.strip().lower() for h in first]


def is_people_file(path: str | Path) -> bool:
    """A segment annotation CSV (video,start,end,label,...) that says which person each row is about (a
    track column, or x1,y1,x2,y2)."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".csv"):
        return False
    head = _header(p)
    return head[:4] == ["video", "start", "end", "label"] and any(c in head for c in ("track", *BOX_COLUMNS))


def _float(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: {what} {text!r} is not a number") from None
    if not np.isfinite(v):
        raise DataError(f"{where}: {what} {text!r} is not a finite number")
    return v


def _box(values, where: str) -> np.ndarray:
    b = np.array([_float(v, c, where) for v, c in zip(values, BOX_COLUMNS)], np.float64)
    if b[2] <= b[0] or b[3] <= b[1]:
        raise DataError(f"{where}: box {b.tolist()} is empty (x2 must be > x1 and y2 > y1)")
    return b


def _video(base: Path, text: str, where: str) -> str:
    p = Path(text.strip()).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise DataError(f"{where}: unknown video: {p} does not exist")
    return str(p.resolve())


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with open(path, newline="") as f:
        rows = [(n, r) for n, r in enumerate(csv.reader(f), 1)
                if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{path}: empty annotation file")
    return [h.strip().lower() for h in rows[0][1]], rows[1:]


def load_boxes(path: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """boxes.csv -> {(video path, track): (times (N,), boxes (N, 4))}, sorted by time."""
    header, rows = _rows(path)
    need = ["video", "t", "track", *BOX_COLUMNS]
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected video,t,track,x1,y1,x2,y2 (frame optional)")
    col = {c: header.index(c) for c in need}
    found: dict[tuple[str, str], list] = {}
    videos: dict[str, str] = {}
    for n, r in rows:
        where = f"{path}:{n}"
        if len(r) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(r)}")
        name = r[col["video"]].strip()
        if name not in videos:  # a video no row uses may be missing: only the rows' own videos must exist
            p = Path(name).expanduser()
            videos[name] = str((p if p.is_absolute() else path.parent / p).resolve())
        t = _float(r[col["t"]], "t", where)
        box = _box([r[col[c]] for c in BOX_COLUMNS], where)
        found.setdefault((videos[name], r[col["track"]].strip()), []).append((t, box))
    out = {}
    for k, v in found.items():
        v.sort(key=lambda tb: tb[0])
        out[k] = (np.array([t for t, _ in v]), np.stack([b for _, b in v]))
    return out


def load_people(path: str | Path, split: str | None = None):
    """Read and validate a per-person annotation CSV (see the module's doc) -> datasets.Dataset whose samples
    carry a PersonSpan each. split keeps only the rows of that split."""
    path = Path(path)
    header, rows = _rows(path)
    if header[:4] != ["video", "start", "end", "label"]:
        raise DataError(f"{path}: header must start with video,start,end,label, got {','.join(header)}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; expected video,start,end,label,track[,split] or "
                        f"video,start,end,label[,track],x1,y1,x2,y2[,split]")
    has_box = [c for c in BOX_COLUMNS if c in header]
    if has_box and len(has_box) < 4:
        raise DataError(f"{path}: a box needs all of x1,y1,x2,y2 (the header has only {','.join(has_box)})")
    col = {c: header.index(c) for c in COLUMNS if c in header}
    boxes = None
    samples, split_of = [], {}
    for n, r in rows:
        where = f"{path}:{n}"
        if len(r) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(r)}")
        get = {c: r[i].strip() for c, i in col.items()}
        if not get["label"]:
            raise DataError(f"{where}: empty label")
        s, e = _float(get["start"], "start", where), _float(get["end"], "end", where)
        if s < 0 or e <= s:
            raise DataError(f"{where}: the segment {s:g}-{e:g} s must have start >= 0 and end after start")
        video = _video(path.parent, get["video"], where)
        track = get.get("track", "")
        if has_box and any(get[c] for c in BOX_COLUMNS):
            span = PersonSpan(track or f"row{n}", s, e, np.array([s]), _box([get[c] for c in BOX_COLUMNS], where)[None],
                              where)
        else:
            if not track:
                raise DataError(f"{where}: no person: give a track (with its boxes in {BOXES_FILE}) or x1,y1,x2,y2")
            if boxes is None:
                bpath = path.parent / BOXES_FILE
                if not bpath.is_file():
                    raise DataError(f"{where}: track {track} needs its boxes in {bpath}, which does not exist")
                boxes = load_boxes(bpath)
            if (video, track) not in boxes:
                raise DataError(f"{where}: {path.parent / BOXES_FILE} has no boxes of track {track} in {get['video']}")
            times, b = boxes[(video, track)]
            inside = (times >= s - 0.5) & (times <= e + 0.5)  # the row's own boxes, and one on either side
            if not inside.any():
                raise DataError(f"{where}: {path.parent / BOXES_FILE} has no box of track {track} in "
                                f"{get['video']} between {s:g} and {e:g} s")
            lo, hi = max(0, int(np.argmax(inside)) - 1), min(len(times), len(times) - int(np.argmax(inside[::-1])) + 1)
            span = PersonSpan(track, s, e, times[lo:hi], b[lo:hi], where)
        sp = get.get("split", "")
        if split and sp != split:
            continue
        samples.append(Sample(video, get["label"], span))
        if sp:
            split_of[video] = sp
    if not samples:
        raise DataError(f"{path}: no rows" + (f" with split '{split}'" if split else ""))
    return Dataset(samples, sorted({x.label for x in samples}), str(path), split_of)


def people_splits(path: str | Path) -> set[str]:
    """The split names a per-person annotation file uses (its split column)."""
    header, rows = _rows(Path(path))
    if "split" not in header:
        return set()
    i = header.index("split")
    return {r[i].strip() for _, r in rows if len(r) > i and r[i].strip()}


def load_person_timelines(path: str | Path, split: str | None = None):
    """Per-person rows as segments.Annotations for the next-event task: one AnnotatedVideo per person (its
    rows as segments, sorted, no overlaps; .person the PersonSpan of its whole timeline)."""
    ds = load_people(path, split)
    people: dict[tuple[str, str], list] = {}
    for s in ds.samples:
        people.setdefault((s.path, s.person.track), []).append(s)
    splits = _row_splits(Path(path))
    videos = []
    for (video, track), rows in people.items():
        segs = [Segment(r.person.start, r.person.end, r.label, int(r.person.row.rsplit(":", 1)[1])) for r in rows]
        check_order(segs, path, f"track {track} of {Path(video).name}")
        times, boxes = [], []
        for r in rows:  # a box per row holds from its start to its end
            p = r.person
            ends = [p.times, [p.end]] if len(p.times) == 1 else [p.times]
            times += list(np.concatenate(ends))
            boxes += [p.boxes[0]] * (len(p.times) + 1) if len(p.times) == 1 else list(p.boxes)
        order = np.argsort(times, kind="stable")
        t, b = np.array(times)[order], np.array(boxes)[order]
        span = PersonSpan(track, segs[0].start, max(g.end for g in segs), t, b, rows[0].person.row)
        sp = {splits.get(r.person.row, "") for r in rows}
        if len(sp) > 1:
            raise DataError(f"{rows[0].person.row}: track {track} of {Path(video).name} has rows in splits "
                            f"{sorted(sp)}; one person's timeline belongs to one split")
        videos.append(AnnotatedVideo(video, segs, sp.pop(), span))
    return Annotations(videos, ds.classes, str(path))


def _row_splits(path: Path) -> dict[str, str]:
    """{"file:line": split} of the rows of a per-person file with a split column."""
    header, rows = _rows(path)
    if "split" not in header:
        return {}
    i = header.index("split")
    return {f"{path}:{n}": r[i].strip() for n, r in rows if len(r) > i}


def load_timelines(path: str | Path, split: str | None = None) -> Annotations:
    """The next-event task's data: segments.load_annotations, or for per-person rows each person's timeline."""
    return load_person_timelines(path, split) if is_people_file(path) else load_annotations(path, split)
