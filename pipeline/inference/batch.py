"""Batch prediction over many videos -> JSON Lines or CSV, resumable, one row per video (with a
Predictor(per_person=True): one row per tracked person, the video's rows written together).

Rows are appended and fsynced as each video finishes, so a kill -9 loses at most the video in
flight; a torn last line (killed mid-write) is cut off on the next run. A rerun with the same
--out skips videos already done, matched by path and content hash, and tries again those whose row
is an error (retry=False keeps them); a file's newest row supersedes its older ones (read_rows). A
bad video - and any source that looks like one by its extension but is no readable file (a broken
symbolic link, a folder named x.mp4, a path that does not exist; the decoders' file check says
which) - becomes a row with an `error` field and the run goes on. Decoding of the next video overlaps with the backbone on the current
one: one prefetch thread decodes chunks ahead across video boundaries.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.data.datasets import DEFAULT_EXTENSIONS
from pipeline.data.video import DecodeTimeout, VideoError, open_frames, prefetch, video_kwargs
from pipeline.errors import SourceError  # noqa: F401 (importable from here as before)
from pipeline.inference.render import render_video
from pipeline.io import content_hash


def _absolute(p: Path) -> str:
    """The resolved path of what exists; a broken link or a missing path as named (made absolute)."""
    return str(p.resolve() if p.exists() else p.absolute())


def expand_sources(sources: list[str], extensions=DEFAULT_EXTENSIONS) -> list[str]:
    """Files, folders (recursive, by video extension), globs, or text files with one path a line.
    In a folder, whatever has a video extension is kept, readable or not (the row will say why it is
    not); a named path that does not exist is kept too, so the files beside it still run."""
    exts = {e.lower() for e in extensions}
    out: list[str] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir() and p.suffix.lower() not in exts:
            out += sorted(_absolute(q) for q in p.rglob("*") if q.suffix.lower() in exts)
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst", ".list"):
            base = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line).expanduser()
                    out.append(str((q if q.is_absolute() else base / q).resolve()))
        elif p.exists() or p.is_symlink():
            out.append(_absolute(p))  # any file the user names: a non-video becomes an error row
        elif any(c in src for c in "*?["):
            hits = sorted(glob.glob(os.path.expanduser(src), recursive=True))
            if not hits:
                raise SourceError(f"{src}: glob matches no file")
            out += [str(Path(h).resolve()) for h in hits if Path(h).is_file()]
        else:
            out.append(_absolute(p))  # named but missing: an error row, not the end of the run
    seen, unique = set(), []
    for x in out:
        if x not in seen:
            seen.add(x)
            unique.append(x)
    return unique


# ----------------------------------------------------------------------------- output files

CSV_BASE = ["path", "fingerprint", "label", "prob"]
CSV_TAIL = ["duration", "frames", "fps", "segments", "error", "frames_expected", "frames_decoded", "warning"]
CSV_DECODE = ["frames_expected", "frames_decoded", "warning"]  # added later: older files resume without them
CSV_NEXT = ["next_label", "next_prob", "next_in_s"]  # next-event models only: the prediction at the end
CSV_PERSON = ["track_id", "tracks", "start", "end", "steps"]  # --per-person: one row per tracked person
CSV_BOXES = ["boxes"]  # --per-person: its sampled boxes, JSON


def csv_columns(topk: int, next_event: bool = False, per_person: bool = False) -> list[str]:
    cols = CSV_BASE[:2] + (CSV_PERSON if per_person else []) + CSV_BASE[2:]
    for k in range(1, topk + 1):
        cols += [f"top{k}_label", f"top{k}_prob"]
    return cols + (CSV_NEXT if next_event else []) + CSV_TAIL + (CSV_BOXES if per_person else [])


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (a kill during a write) so appended rows start on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_rows(path: str | Path) -> dict[str, dict]:
    """The rows of a `vap predict` output (JSONL or CSV) as they stand: path -> its newest row (a rerun
    appends; a retried or changed file's new row supersedes the older ones). A --per-person output has
    several rows per video: this gives the last of them; read the file for all."""
    return {p: {k: v for k, v in row.items() if k != "_track_ids"} for (p, _), row in read_done(Path(path)).items()}


def read_done(path: Path) -> dict[tuple[str, str], dict]:
    """Rows already written: (path, fingerprint) -> row, the newest where a key repeats. Per-person rows
    (a `tracks` field: several rows per video) also carry `_track_ids`, the track ids written for the
    video under the same count of tracks, so that complete() can tell a video whose rows were cut short."""
    if not path.is_file():
        return {}
    _repair_tail(path)
    done = {}

    def add(row: dict) -> None:
        key = (row.get("path"), row.get("fingerprint"))
        prev = done.get(key)
        if row.get("tracks") not in (None, ""):
            same = prev is not None and str(prev.get("tracks")) == str(row["tracks"])
            row["_track_ids"] = (prev["_track_ids"] if same else set()) | {str(row.get("track_id"))}
        done[key] = row

    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                add(row)
    else:
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                add(row)
    return done


def complete(row: dict) -> bool:
    """Whether a video's newest row says it is done: an error row, a video row, or all its per-person rows."""
    if row.get("error") or row.get("tracks") in (None, ""):
        return True
    return len(row.get("_track_ids", ())) >= max(1, int(row["tracks"]))


class RowWriter:
    """Appends one row at a time and makes it durable before returning."""

    def __init__(self, path: Path, topk: int, next_event: bool = False, per_person: bool = False):
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        self.columns = csv_columns(topk, next_event, per_person)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        if self.csv and not new:
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if header == [c for c in self.columns if c not in CSV_DECODE]:  # written before those columns
                self.columns = header
            if header != self.columns:
                raise SourceError(f"{path}: existing CSV has other columns (another --topk, another kind of "
                                  f"model, or --per-person and not?); use a new --out or the same settings")
        self.f = open(path, "a", newline="")
        if self.csv and new:
            self._write(self._csv_line(dict(zip(self.columns, self.columns))))

    def _csv_line(self, row: dict) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in self.columns])
        return buf.getvalue()

    def _write(self, text: str) -> None:
        self.f.write(text)
        self.f.flush()
        os.fsync(self.f.fileno())

    def line(self, row: dict) -> str:
        if not self.csv:
            return json.dumps(row) + "\n"
        flat = {k: row.get(k, "") for k in CSV_BASE + CSV_TAIL + CSV_PERSON if k in self.columns}
        if flat.get("track_id") is None:
            flat["track_id"] = ""
        for k, item in enumerate(row.get("topk", []), 1):
            flat[f"top{k}_label"], flat[f"top{k}_prob"] = item["label"], item["prob"]
        for k in ("segments", "boxes"):
            if k in row and k in self.columns:
                flat[k] = json.dumps(row[k])
        if row.get("next"):
            flat.update(next_label=row["next"]["label"], next_prob=row["next"]["prob"],
                        next_in_s=row["next"].get("in_s", ""))
        return self._csv_line(flat)

    def write(self, row: dict) -> None:
        self.write_many([row])

    def write_many(self, rows: list[dict]) -> None:
        """The rows of one video in one write, durable before returning."""
        self._write("".join(self.line(r) for r in rows))

    def close(self) -> None:
        self.f.close()


# ----------------------------------------------------------------------------- the run

@dataclass
class BatchSummary:
    videos: int = 0
    done: int = 0          # predicted in this run
    skipped: int = 0       # already in --out
    failed: int = 0        # rows with an error (this run and earlier ones)
    retried: int = 0       # videos whose earlier row was an error, tried again in this run
    frames: int = 0
    seconds: float = 0.0
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # "path: what fell short" of rows predicted with a warning
    engine: str = "local"  # local | ray
    workers: int = 1       # processes that predicted (Ray actors)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["frames_per_second"] = round(self.frames / self.seconds, 2) if self.seconds else 0.0
        return d


def _decode_stream(paths: list[str], vcfg):
    """Yield (path, chunk, info, error) for all videos in order; chunk None = video done (with its
    VideoInfo, or the error that stopped it)."""
    for p in paths:
        try:  # a path that is no readable file is a VideoError saying what it is (video._check_file)
            info, chunks = open_frames(p, **video_kwargs(vcfg))
            for frames, ts in chunks:
                yield p, (frames, ts), None, None
            yield p, None, info, None
        except VideoError as e:
            yield p, None, None, str(e)
        except Exception as e:  # an unexpected library error on one file must not end the run
            yield p, None, None, f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def plan(paths: list[str], out: Path, retry: bool, summary: "BatchSummary") -> tuple[list[str], dict[str, str]]:
    """The videos still to predict (the resume rule shared by every engine) and each video's content hash.
    Counts into summary the videos skipped (already in `out`), retried and failed before."""
    done = read_done(out)
    todo, fingerprints = [], {}
    for p in paths:
        try:
            fp = content_hash(p)
        except OSError:
            fp = ""
        fingerprints[p] = fp
        prev = done.get((p, fp))
        if prev is not None and not complete(prev):  # per-person rows cut short by a kill: predict again
            prev = None
        if prev is not None and prev.get("error") and retry:
            summary.retried += 1
            todo.append(p)
        elif prev is not None:
            summary.skipped += 1
            if prev.get("error"):
                summary.failed += 1
                summary.errors.append(prev["error"])
        else:
            todo.append(p)
    return todo, fingerprints


def predict_rows(predictor, paths: list[str], fingerprints: dict[str, str], timeline: bool = False,
                 render_dir: str | Path | None = None, strict: bool = False):
    """Yield (rows, frames decoded) for each video of `paths`, in order: its row (a Predictor(per_person=True):
    one per tracked person), or one row with an `error` field. The one code path of every engine (run_batch
    here, ray_batch's workers), so that their rows are the same. Decoding of the next video overlaps with the
    backbone on the current one."""
    import numpy as np

    feats, times = [], []
    t_wait = t_bb = 0.0
    per_person = getattr(predictor, "per_person", False)

    def finish(p: str, info, err: str | None) -> tuple[list[dict], int]:
        """Predict from the frames encoded so far (or record err): the video's rows."""
        nonlocal feats, times, t_wait, t_bb
        row, n, rows = dict(path=p, fingerprint=fingerprints.get(p, "")), 0, None
        if err is None:
            try:
                t = np.concatenate(times)
                timing = dict(frames_decoded=len(t), decode_wait_s=t_wait, backbone_s=t_bb)
                if per_person:
                    pred = predictor.people_prediction(p, info, len(t), timing)
                else:
                    f = np.concatenate(feats)
                    pred = predictor.predict_features(f, t, info.duration, p, info.fps,
                                                      dict(timing, frames_encoded=len(f)), info)
                if pred.warning and strict:
                    raise VideoError(p, f"{pred.warning} (--strict)")
                if per_person:
                    rows = pred.rows(row["fingerprint"], predictor.cfg.detector.box_every, timeline)
                else:
                    row.update(pred.to_dict(timeline))
                    row.pop("timeline", None)  # the per-window matrix stays out of the row
                    rows = [row]
                if render_dir is not None:
                    rendered = str(render_video(p, pred, Path(render_dir), predictor.cfg.video))
                    for r in rows:
                        r["rendered"] = rendered
                n = len(t)
            except VideoError as e:
                err = str(e)
        if err is not None:
            row["error"] = err
            rows = [row]
        feats, times = [], []
        t_wait = t_bb = 0.0
        return rows, n

    remaining = list(paths)
    while remaining:  # one pass, or more when a stuck decoder is given up
        written = 0
        t_mark = time.perf_counter()
        stream = prefetch(_decode_stream(remaining, predictor.cfg.video), depth=3,
                          timeout=predictor.cfg.video.decode_timeout)
        try:
            for p, chunk, info, err in stream:
                t_got = time.perf_counter()
                t_wait += t_got - t_mark  # waiting for decoded frames: ~0 when prefetch keeps up
                if chunk is not None:
                    if not times:  # a new video: the moving-region (or person) tracker starts afresh
                        (predictor.people if per_person else predictor.encoder).reset()
                    if per_person:
                        predictor.people.encode(*chunk)
                    else:
                        feats.append(predictor.encoder.encode(chunk[0]))
                    times.append(chunk[1])
                    t_mark = time.perf_counter()
                    t_bb += t_mark - t_got
                    continue
                written += 1
                yield finish(p, info, err)
                t_mark = time.perf_counter()
            remaining = []
        except DecodeTimeout as e:  # the video in flight: an error row; the rest in a new pass
            stuck = remaining[written]
            yield finish(stuck, None, f"{stuck}: {e}")
            remaining = remaining[written + 1:]


class RunProgress:
    """What every engine does with a finished row: write it (durable before the next), count it into
    the summary, and move the progress bar."""

    def __init__(self, writer: RowWriter, summary: BatchSummary, total: int, progress: bool, desc: str = "predict"):
        from tqdm import tqdm

        self.writer, self.summary = writer, summary
        self.t_start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit="video", disable=not progress, dynamic_ncols=True)

    def add(self, rows: list[dict], frames: int) -> None:
        """The rows of one video."""
        s, row = self.summary, rows[0]
        if row.get("error"):
            s.failed += 1
            s.errors.append(row["error"])
        elif row.get("warning"):
            s.warnings.append(f"{row['path']}: {row['warning']}")
        self.writer.write_many(rows)
        s.done += 1
        s.frames += frames
        self.bar.update(1)
        el = time.perf_counter() - self.t_start
        self.bar.set_postfix(fps=f"{s.frames / el:.1f}" if el else "-", failed=s.failed)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
        self.summary.seconds = round(time.perf_counter() - self.t_start, 3)


def run_batch(predictor, sources: list[str], out: str | Path, timeline: bool = False, topk: int = 5,
              render_dir: str | Path | None = None, progress: bool = True, retry: bool = True,
              strict: bool = False) -> BatchSummary:
    """Predict every video of `sources` into `out`, one row each, resuming what `out` already holds.
    retry: videos whose row in `out` is an error are tried again (their new row supersedes it).
    strict: a video whose decoding fell short (its row would carry a warning) is an error row instead."""
    out = Path(out)
    paths = expand_sources(sources, tuple(predictor.cfg.data.extensions))
    predictor.topk = min(topk, len(predictor.classes))
    summary = BatchSummary(videos=len(paths))
    todo, fingerprints = plan(paths, out, retry, summary)
    run = RunProgress(RowWriter(out, predictor.topk, predictor.ckpt.get("kind") == "next_event",
                                getattr(predictor, "per_person", False)), summary, len(todo), progress)
    try:
        for rows, frames in predict_rows(predictor, todo, fingerprints, timeline, render_dir, strict):
            run.add(rows, frames)
    finally:
        run.close()
    return summary
