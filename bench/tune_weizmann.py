"""Head and training choices for Weizmann, chosen on validation actors only.

Every candidate runs leave-one-actor-out with several seeds (bench/accuracy_weizmann.py's `run`):
inside each fold the 8 training actors are split by actor into training (6) and validation (2);
the candidate's score is its mean validation top-1 over folds and seeds (ties: the lower mean
validation loss). The held-out test actor never takes part in the choice; its top-1 is printed
beside it for information only.

    python bench/tune_weizmann.py [--seeds 0,1,2] [--candidates base,skip,...] [key=value ...]

Prints JSON, then a Markdown table, best candidate first.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_weizmann import WEIZMANN, run  # noqa: E402

# candidate name -> overrides on top of configs/weizmann.yaml and the command line. The README's
# table: "skip" (now the default), "no skip" (the head before), "no skip + no speed jitter", with
# views.streams=[crop,diff] on the command line.
CANDIDATES = {
    "skip": [],
    "no skip": ["head.skip=false"],
    "no skip + no speed jitter": ["head.skip=false", "train.speed_min=1.0", "train.speed_max=1.0"],
    "no skip + test_clips=3": ["head.skip=false", "train.test_clips=3"],
    "whole clips (max_len=0)": ["train.max_len=0"],
    "input_dropout=0.5": ["head.input_dropout=0.5"],
    "hidden/proj 256": ["head.hidden_size=256", "head.proj_dim=256"],
    "gru": ["head.type=gru"],
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(WEIZMANN))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help=f"of: {', '.join(CANDIDATES)}")
    ap.add_argument("--work", help="folder for the fold runs (default: a temporary folder)")
    ap.add_argument("overrides", nargs="*", help="applied to every candidate, e.g. views.streams=[crop,diff]")
    args = ap.parse_intermixed_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(json.dumps(dict(skipped=f"{data} not found")))
        return {}
    t0 = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for name in args.candidates.split(","):
            ov = [*args.overrides, *CANDIDATES[name]]
            head = next((o.split("=", 1)[1] for o in ov if o.startswith("head.type=")), "lstm")
            per_seed = [run(data, "loao", [head], ov, work / name.replace(" ", "_"), None, s)[head] for s in seeds]
            results[name] = dict(
                overrides=CANDIDATES[name], head=head,
                val_top1=round(float(np.mean([r["val_top1_mean"] for r in per_seed])), 4),
                val_loss=round(float(np.mean([r["val_loss_mean"] for r in per_seed])), 4),
                test_top1=round(float(np.mean([r["top1_mean"] for r in per_seed])), 4),
                test_top1_per_seed=[r["top1_mean"] for r in per_seed],
                seconds=round(sum(r["seconds"] for r in per_seed), 1))
            print(f"{name}: val {results[name]['val_top1']:.4f} test {results[name]['test_top1']:.4f}",
                  file=sys.stderr)
    order = sorted(results, key=lambda n: (-results[n]["val_top1"], results[n]["val_loss"]))
    lines = ["| candidate | val top-1 (training actors) | val loss | test top-1 (held-out actor) | per seed |",
             "|---|---|---|---|---|"]
    for n in order:
        r = results[n]
        lines.append(f"| {n} | {r['val_top1']:.3f} | {r['val_loss']:.3f} | {r['test_top1']:.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in r['test_top1_per_seed'])} |")
    out = dict(benchmark="tune_weizmann", seeds=seeds, overrides=args.overrides, chosen=order[0],
               candidates={n: results[n] for n in order}, seconds=round(time.time() - t0, 1),
               markdown="\n".join(lines))
    print(json.dumps(out, indent=2))
    print(out["markdown"])
    return out


if __name__ == "__main__":
    main()
