"""Segment annotations of untrimmed videos (`video,start,end,label`, seconds) and the per-step
targets of the next-event task built from them.

A video's timeline is its annotated segments plus the gaps between them; a gap is the background
label (data.background; empty = steps in gaps are left out of every loss and metric). At each
sampled step t the targets are:
  current  the label of the segment (or gap) that contains t
  next     the label of the first annotated segment that starts at or after the end of the current
           one (gaps are skipped: "what happens next" names an action); -1 when there is none
  tte      seconds from t to the end of the current segment or gap; NaN after the last segment
Bad rows raise DataError naming the file, the row and the problem.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.samples import Sample
from pipeline.errors import DataError
from pipeline.io import atomic_write_csv

COLUMNS = ("video", "start", "end", "label", "split")
END_TOLERANCE = 0.5  # seconds a segment may run past the decoded end (container rounding)


@dataclass
class Segment:
    start: float
    end: float
    label: str
    row: int = 0  # line of the CSV it came from, for error messages


@dataclass
class AnnotatedVideo:
    path: str
    segments: list[Segment]  # sorted by start, non-overlapping
    split: str = ""
    person: object = None    # tracks.PersonSpan: the timeline of one person of the video (per-person rows)

    @property
    def key(self) -> str:
        """The video's path, or for one person's timeline the path and the person (tracks.PersonSpan.ident)."""
        return self.path if self.person is None else f"{self.path}#{self.person.ident}"

    @property
    def sample(self) -> Sample:
        """The video (or one person's timeline) as an unlabelled sample: what the extractors take."""
        return Sample(self.path, "", self.person)


@dataclass
class Annotations:
    videos: list[AnnotatedVideo]
    labels: list[str]          # sorted action labels (the background label not included)
    source: str = ""
    rows: dict = field(default_factory=dict)  # video path -> rows, for messages

    def __len__(self) -> int:
        return len(self.videos)


def is_annotation_file(path: str | Path) -> bool:
    """A CSV whose header starts with video,start,end,label."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".csv"):
        return False
    with open(p, newline="") as f:
        first = f.readline()
    head = [h.strip().lower() for h in first.split(",")]
    return head[:4] == ["video", "start", "end", "label"]


def _number(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: {what} {text!r} is not a number of seconds") from None
    if not np.isfinite(v) or v < 0:
        raise DataError(f"{where}: {what} {text!r} must be a finite number of seconds >= 0")
    return v


def check_order(segs: list[Segment], path, name: str) -> None:
    """Sort segs by start (in place); overlapping segments raise DataError naming both rows."""
    segs.sort(key=lambda g: (g.start, g.end))
    for a, b in zip(segs, segs[1:]):
        if b.start < a.end - 1e-6:
            raise DataError(f"{path}:{b.row}: segment {b.start:g}-{b.end:g} s '{b.label}' overlaps row "
                            f"{a.row} ({a.start:g}-{a.end:g} s '{a.label}') of {name}")


def load_annotations(path: str | Path, split: str | None = None) -> Annotations:
    """Read and validate `video,start,end,label[,split]` (header required; any row order).

    Video paths are relative to the CSV's folder. split keeps only the videos of that split.
    (Per-person rows: tracks.load_timelines.)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f)]
    rows = [(n, r) for n, r in enumerate(rows, 1) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{path}: empty annotation file")
    header = [h.strip().lower() for h in rows[0][1]]
    if header[:4] != list(COLUMNS[:4]):
        raise DataError(f"{path}: header must be video,start,end,label[,split], got {','.join(header)}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; expected video,start,end,label[,split]")
    has_split = "split" in header
    by_video: dict[str, list[Segment]] = {}
    split_of: dict[str, str] = {}
    for n, r in rows[1:]:
        where = f"{path}:{n}"
        if len(r) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(r)}")
        video, start, end, label = (c.strip() for c in r[:4])
        if not label:
            raise DataError(f"{where}: empty label")
        s, e = _number(start, "start", where), _number(end, "end", where)
        if e <= s:
            raise DataError(f"{where}: end ({e:g} s) must be after start ({s:g} s)")
        p = Path(video).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise DataError(f"{where}: unknown video: {p} does not exist")
        key = str(p.resolve())
        sp = r[4].strip() if has_split else ""
        if key in split_of and split_of[key] != sp:
            raise DataError(f"{where}: video {video} is in split '{sp}' here but '{split_of[key]}' in an earlier row")
        split_of[key] = sp
        by_video.setdefault(key, []).append(Segment(s, e, label, n))
    videos = []
    for key, segs in by_video.items():
        check_order(segs, path, Path(key).name)
        if split is None or split_of[key] == split:
            videos.append(AnnotatedVideo(key, segs, split_of[key]))
    if not videos:
        raise DataError(f"{path}: no videos" + (f" in split '{split}'" if split else ""))
    labels = sorted({g.label for v in videos for g in v.segments})
    return Annotations(videos, labels, str(path))


def check_duration(video: AnnotatedVideo, duration: float, source: str = "") -> None:
    """Segments must end within the decoded video (END_TOLERANCE allowed)."""
    last = max(video.segments, key=lambda g: g.end)
    if last.end > duration + END_TOLERANCE:
        raise DataError(f"{source}:{last.row}: segment {last.start:g}-{last.end:g} s '{last.label}' runs past "
                        f"the end of {Path(video.path).name} ({duration:.2f} s)")


def has_gap(video: AnnotatedVideo, times: np.ndarray) -> bool:
    """True when some sampled time falls outside every segment."""
    inside = np.zeros(len(times), bool)
    for g in video.segments:
        inside |= (times >= g.start) & (times < g.end)
    return not bool(inside.all())


def step_targets(video: AnnotatedVideo, times: np.ndarray, index: dict[str, int],
                 background: str = "background") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step targets at the sampled times (T,): current (T,) int64, next (T,) int64, tte (T,) float32.

    -1 / NaN mark undefined targets (a gap when background is '', no next segment, after the end).
    """
    T = len(times)
    cur = np.full(T, -1, np.int64)
    nxt = np.full(T, -1, np.int64)
    tte = np.full(T, np.nan, np.float32)
    segs = video.segments
    starts = np.array([g.start for g in segs])
    for i, t in enumerate(times):
        j = int(np.searchsorted(starts, t, side="right")) - 1  # last segment starting at or before t
        if j >= 0 and t < segs[j].end:  # inside segment j
            cur[i] = index[segs[j].label]
            tte[i] = segs[j].end - t
            if j + 1 < len(segs):
                nxt[i] = index[segs[j + 1].label]
        else:  # in a gap before segment j + 1 (or after the last one)
            if background:
                cur[i] = index[background]
            if j + 1 < len(segs):
                nxt[i] = index[segs[j + 1].label]
                tte[i] = segs[j + 1].start - t
    return cur, nxt, tte


def boundaries(video: AnnotatedVideo, index: dict[str, int]) -> list[tuple[float, int]]:
    """(start time, label index) of every segment that starts after 0: the moments to anticipate."""
    return [(g.start, index[g.label]) for g in video.segments if g.start > 0]


def write_annotations(path: str | Path, rows: list[tuple]) -> None:
    """rows of (video, start, end, label[, split]) -> an annotation CSV, atomically."""
    width = max(len(r) for r in rows) if rows else 4
    atomic_write_csv(path, list(COLUMNS[:width]),
                     [[r[0], f"{r[1]:.3f}", f"{r[2]:.3f}", *r[3:]] for r in rows])
