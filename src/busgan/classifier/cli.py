"""Subcommands ``train-classifier``, ``test`` and ``select``: thin shells over the Python API."""

from __future__ import annotations

import argparse
from pathlib import Path

from busgan import layout
from busgan.cli import add_command, add_out_option, add_work_option
from busgan.config import add_config_args, config_from_args

WORK_HELP = "work directory holding data/"
WORKERS_HELP = ("data-loading workers: 0 = one per CPU core (as --workers 0 in every command), "
                "1 = load in the training process (default: classifier.workers, 2)")


def _model_arg(args: argparse.Namespace) -> Path:
    """MODEL given positionally or with --model (default: WORK/real/model.keras)."""
    chosen = args.model or args.model_option
    return Path(chosen) if chosen else layout.real_model(Path(args.work))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="model.keras written by busgan train-classifier (default: WORK/real/model.keras)")
    p.add_argument("--model", dest="model_option", metavar="MODEL", help="the same as MODEL")


def _train(args: argparse.Namespace) -> int:
    from busgan.classifier.train import train_classifier

    from busgan.data.parallel import worker_count

    cfg = config_from_args(args).classifier
    cfg.workers = worker_count(cfg.workers)  # 0 means one per core here as in every command
    work = Path(args.work)
    train = Path(args.train) if args.train else work / "data" / "train"
    val = None if args.no_val else (Path(args.val) if args.val else work / "data" / "val")
    if val is not None and not args.val and not val.is_dir():
        val = None  # no data/val: hold out part of the training folder
    out = Path(args.out) if args.out else work / layout.REAL
    train_classifier(train, val, out, cfg, init=Path(args.init) if args.init else None,
                     per_class=args.per_class)
    return 0


def _test(args: argparse.Namespace) -> int:
    from busgan.classifier.evaluate import evaluate_model

    model = _model_arg(args)
    test_dir = Path(args.test) if args.test else Path(args.work) / "data" / "test"
    out = Path(args.out) if args.out else model.parent / "test"
    evaluate_model(model, test_dir, out, batch_size=args.batch_size)  # logs the report
    return 0


def _select(args: argparse.Namespace) -> int:
    from busgan.classifier.select import select_images

    cfg = config_from_args(args).select
    work = Path(args.work)
    model = _model_arg(args)
    generated = Path(args.generated) if args.generated else work / layout.GENERATED
    out = Path(args.out) if args.out else work / layout.SELECTED
    select_images(model, generated, out, cfg)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the classifier stages to the ``busgan`` command."""
    p = add_command(
        sub, "train-classifier", help="train the classifier on a folder-per-class tree",
        description="Train (or fine-tune with --init) the InceptionResNetV2 classifier on "
                    "TRAIN/{benign,malignant}/ images streamed from disk. Writes model.keras, "
                    "history.csv, learning_curve.png and train.json in --out.",
        example=["busgan train-classifier --work runs/demo --config configs/demo.toml",
                 "busgan train-classifier --train gen/selected --out runs/synthetic --epochs 20"])
    add_work_option(p, WORK_HELP)
    p.add_argument("--train", metavar="DIR", help="training images (default: WORK/data/train)")
    p.add_argument("--val", metavar="DIR",
                   help="validation images (default: WORK/data/val if present, else a held-out "
                        "classifier.val_fraction of the training images)")
    p.add_argument("--no-val", action="store_true",
                   help="hold out classifier.val_fraction of the training images instead of a folder")
    add_out_option(p, "output folder (default: WORK/real)")
    p.add_argument("--init", metavar="MODEL", help="fine-tune this model.keras (fresh optimizer)")
    p.add_argument("--per-class", metavar="N", type=int,
                   help="train on N images per class drawn at random (seeded by classifier.seed)")
    add_config_args(p, "classifier")
    for action in p._actions:  # the generated option says what the key means in a TOML file
        if action.dest == "cfg__classifier__workers":
            action.help = WORKERS_HELP
    p.set_defaults(func=_train)

    p = add_command(
        sub, "test", help="test a classifier and print the paper's report",
        description="Predict TEST/{benign,malignant}/ with MODEL and print the paper's report; "
                    "writes predictions.csv, metrics.json, report.txt, roc.png, confusion.png.",
        example=["busgan test --work runs/demo                 # WORK/real/model.keras on WORK/data/test",
                 "busgan test runs/synthetic/model.keras --test runs/demo/data/test --out synthetic-test"])
    _add_model_args(p)
    add_work_option(p, WORK_HELP)
    p.add_argument("--test", "--data", dest="test", metavar="DIR", help="test images (default: WORK/data/test)")
    add_out_option(p, "output folder (default: MODEL's folder/test)")
    p.add_argument("--batch-size", type=int, default=32, help="prediction batch (default: 32)")
    p.set_defaults(func=_test)

    p = add_command(
        sub, "select", help="keep generated images the real-trained model assigns to their class",
        description="Score GENERATED/{benign,malignant}/ with MODEL and keep each image whose "
                    "predicted class is its generator's class (the paper's rule). Writes kept "
                    "images to OUT/<class>/ and every score to OUT/scores.csv; a rerun only "
                    "scores new images.",
        example=["busgan select --work runs/demo     # WORK/sgan_out -> WORK/selected",
                 "busgan select runs/demo/real/model.keras --generated gen --out gen-selected"])
    _add_model_args(p)
    add_work_option(p, WORK_HELP)
    p.add_argument("--generated", metavar="DIR", help=f"generated images (default: WORK/{layout.GENERATED})")
    add_out_option(p, "output folder (default: WORK/selected): new, empty or written by an earlier "
                      "busgan select (only images it recorded are ever removed)")
    add_config_args(p, "select")
    p.set_defaults(func=_select)
