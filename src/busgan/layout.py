"""The work directory of ``busgan run``: one home for every folder and file name in it.

    data/{train,val,test}/{benign,malignant}/   prepared images (stage prepare)
    real/model.keras                            the real-trained classifier: selector, FID features
    stylegan2/{benign,malignant}/               one GAN per class (snapshots, fid.csv, best.json),
    stylegan2/conditional/                      or one conditional GAN for both (gan.conditional)
    sgan_out/{benign,malignant}/                generated images
    selected/{benign,malignant}/                generated images the real classifier accepted
    audit/                                      the memorization audit: distances, plots,
                                                excluded.csv (near-copies kept out of the arms)
    oracle/{phantom,generated,selected}/        the oracle arm's fresh phantom images, on the
                                                generated images' path
    arms/ARM/repK/model.keras                   every arm's classifier, replicate K (1-based)
    evaluation/ARM/repK/predictions.csv         its predictions on data/test (stage test)
    efficiency/fF/{real,real+synthetic}/repK/   the data-efficiency curve's classifiers (fraction F)
    stats/                                      the verdict (stats.json, stats.md, figures)
    records/STAGE.json                          what each finished stage used and wrote
"""

from __future__ import annotations

from pathlib import Path

DATA = "data"
SPLITS = ("train", "val", "test")
REAL = "real"
GANS = "stylegan2"
GENERATED = "sgan_out"
SELECTED = "selected"
AUDIT = "audit"
EXCLUDED_FILE = "excluded.csv"
EXCLUDED_COLUMNS = ("file", "class", "reasons")
"""audit/excluded.csv (stage audit): selected images (file = CLASS/NAME, relative to selected/)
the synthetic arms must not train on; only a header unless audit.policy is "exclude"."""
ORACLE = "oracle"
EFFICIENCY = "efficiency"
ARMS = "arms"
EVALUATION = "evaluation"
STATS = "stats"
MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.csv"

# File formats shared by the stage that writes a file and the stages that read it.
FEATURE_LAYER = "head_dense"  # the classifier layer whose output is the FID/KID feature space
PREPROCESS_LAYER = "preprocess"  # the classifier's first layer: the backbone's own input scaling
PREDICTION_COLUMNS = ("file", "true_label", "pred_label", "prob_benign", "prob_malignant")
"""predictions.csv (stage test): labels as class names; malignant is the positive class."""

# The arms: "real" (the reference), "synthetic" (the primary comparison), and the optional
# control and combination arms of the [arms] config section.
REAL_ARM, SYNTHETIC_ARM, COMBINED_ARM, ORACLE_ARM = "real", "synthetic", "real+synthetic", "oracle"
ARM_NAMES = (REAL_ARM, SYNTHETIC_ARM, COMBINED_ARM, ORACLE_ARM)


def data_split(work: Path, split: str) -> Path:
    return Path(work) / DATA / split


CONDITIONAL_GAN = "conditional"
"""stylegan2/conditional/: the one GAN of both classes when gan.conditional is set."""


def gan_dir(work: Path, cls: str, conditional: bool) -> Path:
    """The train-gan folder that generates class ``cls``: its own, or the conditional GAN's."""
    return Path(work) / GANS / (CONDITIONAL_GAN if conditional else cls)


def real_model(work: Path) -> Path:
    return Path(work) / REAL / MODEL_FILE


def replicate_dir(work: Path, arm: str, k: int) -> Path:
    """The folder of replicate ``k`` (1-based) of ``arm``."""
    return Path(work) / ARMS / arm / f"rep{k}"


def arm_model(work: Path, arm: str, k: int) -> Path:
    return replicate_dir(work, arm, k) / MODEL_FILE


def arm_test_dir(work: Path, arm: str, k: int) -> Path:
    """Kept apart from ``arms/``: testing must not change the arm stages' output hashes."""
    return Path(work) / EVALUATION / arm / f"rep{k}"


def arm_predictions(work: Path, arm: str, k: int) -> Path:
    return arm_test_dir(work, arm, k) / PREDICTIONS_FILE


def audit_excluded(work: Path) -> Path:
    return Path(work) / AUDIT / EXCLUDED_FILE
