"""Head and training choices for Weizmann, chosen on validation actors only.

Every candidate runs leave-one-actor-out with several seeds (bench/accuracy_weizmann.py's `run`):
inside each fold the 8 training actors are split by actor into training (6) and validation (2);
the candidate's score is its mean validation top-1 over folds and seeds (ties: the lower mean
validation loss). The held-out test actor never takes part in the choice; its top-1 is printed
beside it for information only.

--select nested scores candidates one level further in, so that choices which change what the final
model trains on (train.refit: retrain on train + validation) can be judged too, and the 2-actor
validation top-1 (near 1.0 for every candidate) stops being the only signal: inside each outer fold
two of the 8 training actors (accuracy_weizmann.inner_folds) are held out and scored like test actors,
the candidate trains on the other 6 (1 of them, data.val_fraction=0.17, picks the epoch), and the
outer test actor is left out of the run altogether. The candidate with the best nested top-1 (ties:
the validation top-1, then the lower validation loss) is chosen; the outer runs are made as before
and their test top-1 printed for information.

    python bench/tune_weizmann.py [--seeds 0,1,2] [--candidates NAME,...] [--select val|nested] [key=value ...]

Prints JSON, then a Markdown table, best candidate first.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline.capabilities import describe  # noqa: E402

from accuracy_weizmann import parse_args, run, work_folder  # noqa: E402

# candidate name -> overrides on top of configs/weizmann.yaml and the command line (names without
# commas, so --candidates can list them). The README's tables: the nested choice of refit and the
# hidden size (the first four), and the earlier validation-only sweep of the skip read-out, made with
# hidden 128 and no refit (the "earlier" rows pin those).
EARLIER = ["head.hidden_size=128", "train.refit=false"]
CANDIDATES = {
    "refit + hidden 64 (default)": [],
    "refit + hidden 128": ["head.hidden_size=128"],
    "hidden 64 no refit": ["train.refit=false"],
    "hidden 128 no refit (earlier default)": EARLIER,
    "earlier no skip": [*EARLIER, "head.skip=false"],
    "earlier no skip + no speed jitter": [*EARLIER, "head.skip=false", "train.speed_min=1.0", "train.speed_max=1.0"],
    "earlier no skip + test_clips=3": [*EARLIER, "head.skip=false", "train.test_clips=3"],
    "whole clips (max_len=0)": ["train.max_len=0"],
    "input_dropout=0.5": ["head.input_dropout=0.5"],
    "gru": ["head.type=gru"],
}
NESTED = ["data.val_fraction=0.17"]  # --select nested: 5 training actors + 1 that picks the epoch


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help=f"of: {', '.join(CANDIDATES)}")
    ap.add_argument("--select", default="val", choices=["val", "nested"],
                    help="val: validation top-1 of the outer runs; nested: top-1 on held-out training actors")
    ap.add_argument("overrides", nargs="*", help="applied to every candidate, e.g. views.streams=[crop,diff]")
    args, data = parse_args(ap, argv)
    if data is None:
        return {}
    t0 = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    with work_folder(args.work) as work:
        for name in args.candidates.split(","):
            ov = [*args.overrides, *CANDIDATES[name]]
            head = next((o.split("=", 1)[1] for o in ov if o.startswith("head.type=")), "lstm")
            folder = work / name.replace(" ", "_")
            per_seed = [run(data, "loao", [head], ov, folder, None, s)[head] for s in seeds]
            nested = [run(data, "loao", [head], [*NESTED, *ov], folder / "nested", None, s, inner=True)[head]
                      for s in seeds] if args.select == "nested" else []
            results[name] = dict(
                overrides=CANDIDATES[name], head=head,
                nested_top1=round(float(np.mean([r["top1_mean"] for r in nested])), 4) if nested else None,
                nested_top1_per_seed=[r["top1_mean"] for r in nested],
                val_top1=round(float(np.mean([r["val_top1_mean"] for r in per_seed])), 4),
                val_loss=round(float(np.mean([r["val_loss_mean"] for r in per_seed])), 4),
                test_top1=round(float(np.mean([r["top1_mean"] for r in per_seed])), 4),
                test_top1_per_seed=[r["top1_mean"] for r in per_seed],
                seconds=round(sum(r["seconds"] for r in per_seed), 1))
            print(f"{name}: nested {results[name]['nested_top1']} val {results[name]['val_top1']:.4f} "
                  f"test {results[name]['test_top1']:.4f}", file=sys.stderr)
    order = sorted(results, key=lambda n: (-(results[n]["nested_top1"] or 0), -results[n]["val_top1"],
                                           results[n]["val_loss"]))
    lines = ["| candidate | nested top-1 (held-out training actors) | val top-1 (training actors) | val loss "
             "| test top-1 (held-out actor) | per seed |", "|---|---|---|---|---|---|"]
    for n in order:
        r = results[n]
        nested = "-" if r["nested_top1"] is None else f"{r['nested_top1']:.3f}"
        lines.append(f"| {n} | {nested} | {r['val_top1']:.3f} | {r['val_loss']:.3f} | {r['test_top1']:.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in r['test_top1_per_seed'])} |")
    out = dict(machine=describe(), benchmark="tune_weizmann", select=args.select, seeds=seeds,
               overrides=args.overrides, chosen=order[0],
               candidates={n: results[n] for n in order}, seconds=round(time.time() - t0, 1),
               markdown="\n".join(lines))
    print(json.dumps(out, indent=2))
    print(out["markdown"])
    return out


if __name__ == "__main__":
    main()
