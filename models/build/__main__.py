"""Command line: build the zoo, or evaluate the shipped tiers on a folder.

    python -m firmware_py.models.build --data ../shared/data [--folds 0,1,2,3,4] [--tasks busi,ddti]
    python -m firmware_py.models.build evaluate --data ../shared/data/busi --json out/busi_eval.json
    python -m firmware_py.models.build finish     # manifest + REPORT.md + signature from results on disk
    python -m firmware_py.models.build status --work-dir DIR   # where a resumable build stands
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from . import pipeline
from .tiers import TrainSettings


def _ints(text):
    return tuple(int(v) for v in text.split(",") if v.strip())


def build_parser():
    ap = argparse.ArgumentParser(prog="firmware-py models build",
                                 description="reproduce the shipped int8 tiers from the data")
    ap.add_argument("--data", required=True, help="../shared/data (busi/ and ddti/) or one dataset folder")
    ap.add_argument("--tasks", default="busi,ddti", help="comma list of busi, ddti")
    ap.add_argument("--folds", default="0,1,2,3,4", help="which of the 5 folds to run; 0 trains the shipped tiers")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count (quick runs)")
    ap.add_argument("--models-dir", default=pipeline.MODELS_DIR)
    ap.add_argument("--work-dir", default=None, help="per-fold JSON results (default models/report/cv)")
    ap.add_argument("--log", default=None, help="log file (default <work-dir>/build.log)")
    ap.add_argument("--no-ship", action="store_true", help="measure only; leave the shipped files alone")
    ap.add_argument("--sign-key", default=os.path.join(pipeline.MODELS_DIR, "keys", "dev-ed25519.pem"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--augment", default="device", choices=("device", "basic"),
                    help="augmentation profile: device (fill corners, sectors, TGC, dynamic range, blur; "
                         "issue 16) or basic (the recipe of the tiers shipped before it)")
    ap.add_argument("--max-train", type=int, default=None, help="cap the training set (smoke runs)")
    ap.add_argument("--fresh", action="store_true",
                    help="discard the per-fold checkpoints (<work-dir>/ckpt, or .cache/models-build/<name>/ckpt for a "
                         "work dir inside models/) instead of resuming from them")
    ap.add_argument("--tiers", default=None,
                    help="comma list of student tiers to retrain (default all); their results replace "
                         "the old ones in each fold's JSON")
    return ap


def _setup_logging(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(path)])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        from .evaluate import main as eval_main
        return eval_main(argv[1:])
    if argv and argv[0] == "finish":
        # Manifest + REPORT.md + signature from the results on disk (after --no-ship CV runs).
        ap = argparse.ArgumentParser(prog="python -m firmware_py.models.build finish")
        ap.add_argument("--models-dir", default=pipeline.MODELS_DIR)
        ap.add_argument("--sign-key", default=os.path.join(pipeline.MODELS_DIR, "keys", "dev-ed25519.pem"))
        a = ap.parse_args(argv[1:])
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        pipeline.finish(a.models_dir, a.sign_key if os.path.exists(a.sign_key) else None)
        return 0
    if argv and argv[0] == "status":
        from .status import main as status_main
        return status_main(argv[1:])
    if argv and argv[0] == "manifest":
        from .manifest import main as manifest_main
        return manifest_main(argv[1:])
    args = build_parser().parse_args(argv)
    cfg = TrainSettings(seed=args.seed, max_train=args.max_train, augment=args.augment).scaled(args.epochs_scale)
    work = args.work_dir or os.path.join(args.models_dir, "report", "cv")
    _setup_logging(args.log or os.path.join(work, "build.log"))
    try:
        pipeline.build(args.data, tasks=tuple(t for t in args.tasks.split(",") if t), folds=_ints(args.folds),
                       models_dir=args.models_dir, work_dir=work, cfg=cfg, ship=not args.no_ship,
                       sign_key=args.sign_key if os.path.exists(args.sign_key) else None, threads=args.threads,
                       only=tuple(t for t in args.tiers.split(",") if t) if args.tiers else None,
                       fresh=args.fresh)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"models build: {exc}", file=sys.stderr)
        return 2
    print("\nmodels build: done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
