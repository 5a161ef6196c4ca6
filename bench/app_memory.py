"""The web app under load: memory per round and the temp folder afterwards.

Starts `python app.py` (the real server, in a subprocess with its own empty TMPDIR, so its temp
folder and Gradio's upload cache are the only things in it), then sends ROUNDS rounds of CONCURRENT
simultaneous uploads through gradio_client's /analyse endpoint (each upload a different synthetic
clip, as real users send different files), and prints JSON:

- rss_mb: the server's resident memory at start and after each round (psutil);
- last5_spread: (max - min) / min of the last 5 rounds' RSS (goal: <= 0.10, i.e. memory levels off);
- tmp_mb: the server's temp folder at start, after the rounds, and once --cache-age has passed with
  the app idle (goal: back to its size at start: every upload and result is swept).

    python bench/app_memory.py [--rounds 10] [--concurrent 8] [--cache-age 30] [--checkpoint best.pt]

Without --checkpoint it trains `vap demo --quick` into the work folder first (about a minute).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from first_run import serving  # noqa: E402  (bench/ is this script's folder)

from pipeline.capabilities import describe  # noqa: E402


def folder_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:  # swept while walking
                pass
    return total / 2**20


def start_app(ckpt: Path, work: Path, cache_age: float, port: int) -> tuple[subprocess.Popen, str, Path]:
    tmp = work / "app-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(work / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(ckpt), "--port", str(port),
                             "--runs", str(work / "runs"), "--cache-age", str(cache_age)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(tmp),
                                     VAP_CACHE=str(work / "feature-cache")))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if serving(port):
            return proc, f"http://127.0.0.1:{port}/", tmp
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start:\n" + (work / "app.log").read_text())


def one_round(url: str, clips: list[Path], downloads: Path) -> list[str]:
    """Upload every clip at once; the errors (empty when all analyses came back)."""
    from gradio_client import Client, handle_file

    errors: list[str] = []

    def send(clip: Path):
        try:
            Client(url, verbose=False, download_files=str(downloads)).predict(handle_file(str(clip)),
                                                                               api_name="/analyse")
        except Exception as e:  # counted in the report: the bench measures, it does not stop
            errors.append(f"{clip.name}: {e}")

    threads = [threading.Thread(target=send, args=(c,)) for c in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--cache-age", type=float, default=30.0, help="the app's --cache-age for this run (seconds)")
    ap.add_argument("--checkpoint", help="model to serve (default: train vap demo --quick first)")
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--work", help="work folder (default: temporary)")
    args = ap.parse_args(argv)
    import psutil

    from pipeline.data.synthetic import ACTIONS, make_dataset

    with tempfile.TemporaryDirectory() as tmpdir:
        work = Path(args.work or tmpdir)
        ckpt = Path(args.checkpoint) if args.checkpoint else work / "demo" / "run" / "best.pt"
        if not ckpt.is_file():
            from pipeline.cli import main as vap

            with contextlib.redirect_stdout(sys.stderr):  # the demo's summary; stdout is this bench's JSON
                rc = vap(["demo", "--quick", "--out", str(work / "demo")])
            if rc != 0:
                raise SystemExit("vap demo --quick failed")
        n = args.rounds * args.concurrent
        per_class = -(-n // 6)
        clips = sorted(make_dataset(work / "clips", per_class, ACTIONS[:6], seed=7).glob("*/*.mp4"))[:n]
        downloads = work / "downloads"
        proc, url, tmp = start_app(ckpt, work, args.cache_age, args.port)
        try:
            server = psutil.Process(proc.pid)
            rss = [server.memory_info().rss / 2**20]
            tmp_start = folder_mb(tmp)
            rounds, t0 = [], time.time()
            for r in range(args.rounds):
                tr = time.time()
                errors = one_round(url, clips[r * args.concurrent:(r + 1) * args.concurrent], downloads)
                rss.append(server.memory_info().rss / 2**20)
                rounds.append(dict(round=r + 1, rss_mb=round(rss[-1], 1), tmp_mb=round(folder_mb(tmp), 1),
                                   seconds=round(time.time() - tr, 1), errors=errors))
                print(f"round {r + 1}: RSS {rss[-1]:.0f} MB, temp {rounds[-1]['tmp_mb']:.1f} MB, "
                      f"{rounds[-1]['seconds']:.0f} s, {len(errors)} errors", file=sys.stderr)
            tmp_after = folder_mb(tmp)
            # idle: Gradio's delete_cache and the app's sweeper run every min(age, 600) s and remove what
            # is older than age; two periods plus a margin
            time.sleep(2 * args.cache_age + 5)
            tmp_idle = folder_mb(tmp)
            rss_idle = server.memory_info().rss / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        last5 = rss[-5:]
        spread = (max(last5) - min(last5)) / min(last5)
        out = dict(machine=describe(), benchmark="app_memory", rounds=args.rounds, concurrent=args.concurrent,
                   cache_age_s=args.cache_age, rss_mb=[round(x, 1) for x in rss],
                   rss_idle_mb=round(rss_idle, 1),
                   last5_spread=round(spread, 4), last5_within_10pct=spread <= 0.10,
                   tmp_mb=dict(start=round(tmp_start, 2), after_rounds=round(tmp_after, 2),
                               idle=round(tmp_idle, 2)),
                   tmp_back_to_start=tmp_idle <= tmp_start + 0.01,
                   errors=sum(len(r["errors"]) for r in rounds), per_round=rounds,
                   seconds=round(time.time() - t0, 1))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
