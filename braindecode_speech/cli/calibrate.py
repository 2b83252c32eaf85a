"""``braindecode-speech calibrate``: fit a model folder's subject layer to a new subject on the
first minutes of its training blocks, evaluate it on the subject's test blocks and write the
calibrated model folder."""

from __future__ import annotations

import argparse

HELP = "calibrate a model folder to a new subject on its first minutes of data"


def _minutes(value: str) -> float | None:
    if value == "all":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes nor 'all': {value!r}") \
            from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder written by `export` (or a Hugging Face Hub repo id)")
    parser.add_argument("--data", required=True, help="folder of the local copy of the study")
    parser.add_argument("--study", required=True, help="study name (see `check --help`)")
    parser.add_argument("--subject", required=True,
                        help="the new subject (not one the model was trained on)")
    parser.add_argument("--minutes", required=True, type=_minutes,
                        help="calibrate on the first MINUTES of the subject's training blocks "
                        "('all': every training block)")
    parser.add_argument("--out", help="the calibrated model folder to write (new or empty; "
                        "default: calibrated-<subject>)")
    parser.add_argument("--steps", type=int, default=100, help="Adam steps (batches)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the model's optim.lr)")
    parser.add_argument("--spatial", action="store_true",
                        help="also fit the spatial attention (shared by every subject: the "
                        "calibrated model is then the new subject's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch order")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..sharing import BrainDecoder, SharingError

    out = Path(args.out or f"calibrated-{args.subject}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SharingError(f"{out}: already exists and is not an empty folder; calibrate "
                           "writes a new model folder")
    decoder = BrainDecoder.from_pretrained(args.model)
    calibrated, result = decoder.calibrate(args.data, args.study, args.subject, args.minutes,
                                           steps=args.steps, lr=args.lr, spatial=args.spatial,
                                           seed=args.seed)
    calibrated.save_pretrained(out)
    summary = result.summary()
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n",
                                          encoding="utf-8")
    k = result.after["topk"][-1]
    print(f"Subject {args.subject}: {result.n_windows} windows ({result.seconds / 60:.1f} min "
          f"of training blocks), loss {result.loss_before:.3f} -> {result.loss_after:.3f}; "
          f"segment top-{k} on its {summary['n_test_windows']} test windows: "
          f"{100 * summary[f'before.segment.top{k}']:.1f} % (mean subject layer) -> "
          f"{100 * summary[f'after.segment.top{k}']:.1f} % (chance "
          f"{100 * result.after['chance']['segment'][f'top{k}']:.1f} %)")
    print(f"Calibrated model folder: {out} (result: {out / 'calibration.json'})")
    return 0
