"""busgan: StyleGAN2 augmentation of breast-ultrasound classification, stage by stage."""

__version__ = "0.1.0"
CLASSES: tuple[str, str] = ("benign", "malignant")
"""Class names in label order (benign = 0, malignant = 1), as in the seed's sorted folders."""
