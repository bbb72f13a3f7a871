"""Evaluation of pretrained backbones (paper §3.4, §4): frozen-feature linear probe and kNN,
whole-network fine-tuning (DINO ViT-S/8, Table 4) and Faster R-CNN R50-C4 detection on VOC
(Table 3). Each module does one job; `commands.py` wires them to `semantic-pairs eval`."""
