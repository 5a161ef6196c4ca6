"""Run every performance benchmark (bench/perf.py), each in its own process, and write the results
as JSON (bench/results.json) and as a Markdown table (bench/results.md, also printed).

    python bench/run_all.py [--quick] [--only decode,backbone,...] [--out bench/results]

About 10 minutes on 2 CPU cores; the inputs are generated once into ~/.cache/vap/bench.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["decode", "backbone", "e2e", "streaming", "training", "memory", "peer", "mirror"]


def run(name: str, quick: bool, device: str = "auto") -> dict:
    cmd = [sys.executable, str(HERE / "perf.py"), name, "--device", device] + (["--quick"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return dict(bench=name, error=(p.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(p.stdout)


def markdown(results: list[dict]) -> str:
    machine = next((r["machine"] for r in results if "machine" in r), {})
    lines = [f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch "
             f"{machine.get('torch', '?')}" + (f", GPU {machine['gpu']}" if machine.get("gpu") else ""),
             f"CPU flags: {' '.join(machine.get('flags', [])) or '?'}; PyTorch kernels: "
             f"{machine.get('torch_cpu_capability', '?')}; native bf16: {machine.get('bf16', '?')}; "
             f"VAP_CPU_FEATURES={machine.get('cpu_features', '?')}", ""]
    for r in results:
        name = r["bench"]
        lines.append(f"### {name}" + (f" ({r['seconds']} s)" if "seconds" in r else ""))
        if "error" in r:
            lines += [f"failed: {r['error']}", ""]
            continue
        if name == "decode":
            lines += ["| video | decoder | frames | frames/s |", "|---|---|---|---|"]
            lines += [f"| {x['video']} | {x['decoder']} ({x['sampling']}) | {x.get('frames', '')} | "
                      f"{x.get('frames_per_s', x.get('skipped', ''))} |" for x in r["rows"]]
        elif name == "backbone":
            lines += ["| backbone | input | eager fp32 | channels-last | bf16/fp16 | ONNX Runtime | fastest (x eager) |",
                      "|---|---|---|---|---|---|---|"]
            for x in r["rows"]:
                if "error" in x:
                    lines.append(f"| {x['backbone']} | {x['input_size']} | not run: {x['error']} | | | | |")
                    continue

                def f(rt, prec, cl):
                    m = [p for p in x["paths"] if p["runtime"] == rt and p["precision"] in prec and p["channels_last"] == cl]
                    if not m:
                        return "-"
                    return str(m[0].get("frames_per_s", "error")) + ("" if m[0].get("ok", False) else " (mismatch)")
                lines.append(f"| {x['backbone']} ({x['weights']}) | {x['input_size']} | {f('torch', ['fp32'], False)} | "
                             f"{f('torch', ['fp32'], True)} | {f('torch', ['bf16', 'fp16'], False)} | "
                             f"{f('onnxruntime', ['fp32'], False)} | {x['fastest']} ({x['speedup_vs_eager_fp32']}x) |")
        elif name == "e2e":
            lines += [f"goal: {r['goal']}; folder {r['folder']}", "",
                      "| runtime | videos | frames | vap predict frames/s | backbone-only frames/s | decode-only frames/s "
                      "| ratio to backbone-only |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {x['runtime']} | {x['videos']} | {x['frames']} | {x['predict_frames_per_s']} | "
                      f"{x['backbone_frames_per_s']} | {x.get('decode_frames_per_s', '')} | {x['ratio']} |" for x in r["rows"]]
        elif name == "streaming":
            lines += [f"goal: {r['goal']}", "", "| runtime | backbone p50 / p95 ms | push p50 ms | push p95 ms | goal ms | met |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {x['runtime']} | {x['backbone_ms_p50']} / {x['backbone_ms_p95']} | {x['push_ms_p50']} | "
                      f"{x['push_ms_p95']} | {x['goal_ms']} | {x['met']} |" for x in r["rows"]]
        elif name == "training":
            lines += [f"goal: {r['goal']}; {r['sequences']} sequences x {r['steps']} steps, D={r['feature_dim']}, "
                      f"train.max_len={r['max_len']}", "", "| variant | s for 30 epochs | final train top-1 |",
                      "|---|---|---|"]
            lines += [f"| {x['variant']} | {x['seconds_for_30_epochs']} | {x['final_train_top1']} |" for x in r["rows"]]
        elif name == "memory":
            lines += [f"{r['command']}", "", "| video | peak RSS MB | seconds |", "|---|---|---|"]
            lines += [f"| {x['video']} | {x['peak_rss_mb']} | {x['seconds']} |" for x in r["rows"]]
            if "ratio_10min_to_60s" in r:
                lines += ["", f"10 min / 60 s peak RSS: {r['ratio_10min_to_60s']}"]
        elif name == "peer":
            lines += [f"goal: {r['goal']}; {r['video_seconds']} s of 320x240 video; {r['note']}", "",
                      "| model | seconds per video | share of the cheapest peer |", "|---|---|---|"]
            lines += [f"| {x['model']} | {x['seconds_per_video']} | {x.get('share_of_cheapest_peer', '')} |"
                      for x in r["rows"]]
        elif name == "mirror":
            lines += [f"goal: {r['goal']}; {r['videos']} videos of {r['folder']}, {r['backbone']} {r['numerics']}, "
                      f"streams {r['streams']}", "", "| variant | seconds |", "|---|---|"]
            lines += [f"| {x['variant']} | {x['seconds']} |" for x in r["rows"]]
            lines += ["", f"one decode / two passes: {r['ratio']}; identical features: {r['identical_features']}"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(ORDER))
    ap.add_argument("--out", default=str(HERE / "results"), help="writes OUT.json and OUT.md")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (the training benchmark is always CPU)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else ORDER
    t0 = time.time()
    results = []
    for n in names:
        print(f"[run_all] {n} ...", file=sys.stderr, flush=True)
        results.append(run(n, args.quick, args.device))
    md = markdown(results) + f"\nTotal: {round(time.time() - t0, 1)} s (`python bench/run_all.py" + (
        " --quick" if args.quick else "") + "`)\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
