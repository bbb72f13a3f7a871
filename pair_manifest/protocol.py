"""The paper's protocol in one place: every package imports its numbers and names from here.

Torch-free and import-free, so `semantic-pairs --help` and the curation app read the same values
the training code uses. Sections follow the paper (`semantic-pairs-paper.txt`).
"""
from __future__ import annotations

# -- the dataset (§3.1) ------------------------------------------------------------------------
CLASSES = 187                 # ImageNet-1K classes of the paper's selection (§3.1.1)
PAIRS_PER_CLASS = 157         # target per class: 187 x 157 = 29,359 pairs (§3.1.1)
SUBSETS = (50, 100, 157)      # pairs per class of the dataset-size ablation (§3.1, Table 2)
PAPER_PAIRS = CLASSES * PAIRS_PER_CLASS

# -- pretraining (§4) --------------------------------------------------------------------------
RESOLUTION = 64               # input side in pixels (§4: 64x64)
BATCH_SIZE = 256              # pairs per step (§4); learning rates scale linearly from this batch
EPOCHS = 200                  # default schedule (§4; Table 1 also 400 and 800)
DINO_VIT_EPOCHS = 300         # DINO with ViT-S/8 (§4.3)
BACKBONE = "resnet50"         # the paper's backbone (§4)
BACKBONES = ("resnet50", "resnet18", "vit_s8", "vit_tiny8")   # vit_s8: DINO's ablation; small ones for tests
STEMS = ("imagenet", "small")
AUGMENTATIONS = ("paper", "gray_s", "color_jitter", "only_c", "method")  # §4.4.1 ablations, plus each method's own
METHODS = ("simclr", "byol", "dino", "vicreg", "mocov2", "simsiam", "barlow_twins", "swav")
DATA_CONFIGS = ("sp", "sp_100", "sp_50", "ap", "ap_100", "ap_50")

# -- evaluation (§4.2) -------------------------------------------------------------------------
EVAL_DATASETS = ("cifar10", "cifar100", "stl10")
