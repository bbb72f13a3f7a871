"""Detection: the AP computation against a case worked by hand, the VOC reader, and the C4
detector training and scoring on a small VOC-format folder of real photos with hand-drawn boxes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.eval.detection import DetectionHyperparameters, c4_detector, detection_eval, learning_rate, train_detector
from training.eval.errors import EvalError
from training.eval.voc import open_detection
from training.eval.voc_eval import class_ap, evaluate_detections, voc_ap
from training.eval.voc_sample import SAMPLE_CLASSES, write_sample_devkit

from .eval_support import make_run

# Small enough for 2 CPU cores; the structure (C4 trunk, 14x14 RoIAlign, layer-4 head) is the real one.
TINY = DetectionHyperparameters(
    iterations=8, batch_size=2, base_lr=0.02 * 8, warmup_iterations=2, min_sizes_train=(96, 128),
    min_size_test=128, max_size=192, rpn_pre_nms_train=300, rpn_post_nms_train=64, rpn_pre_nms_test=200,
    rpn_post_nms_test=32, rpn_batch_per_image=64, roi_batch_per_image=16, log_every=1,
)


def _hand_case():
    """One class, two images. Ground truth: image 0 box A; image 1 box B and a difficult box C.
    Detections by score: 0.9 on A (IoU 0.8), 0.8 on A again (IoU 1.0), 0.7 on C (difficult),
    0.6 on B (IoU 0.6)."""
    a = [0, 0, 10, 10]
    truth = {0: (np.array([a], float), np.array([1]), np.array([False])),
             1: (np.array([a, [20, 20, 30, 30]], float), np.array([1, 1]), np.array([False, True]))}
    predictions = {0: (np.array([[0, 0, 10, 8], a], float), np.array([0.9, 0.8]), np.array([1, 1])),
                   1: (np.array([[20, 20, 30, 30], [0, 0, 10, 6]], float), np.array([0.7, 0.6]), np.array([1, 1]))}
    return predictions, truth


def test_ap_matches_the_hand_computed_values():
    # IoU 0.50, 0.55: TP, FP (duplicate), ignored (difficult), TP -> recall .5,.5,1; precision 1,.5,2/3.
    #   11-point: six recall points <= 0.5 at precision 1, five above at 2/3 -> (6 + 10/3) / 11 = 28/33.
    # IoU 0.60-0.75: the last detection becomes FP -> recall never passes 0.5 -> 6/11.
    # IoU 0.80-0.95: the first detection (IoU 0.8, not > 0.8) is FP, the duplicate (IoU 1) is TP
    #   -> best precision 0.5 up to recall 0.5 -> 3/11.
    predictions, truth = _hand_case()
    result = evaluate_detections(predictions, truth, ("thing",), use_07_metric=True)
    assert result["AP50"] == pytest.approx(28 / 33)
    assert result["AP75"] == pytest.approx(6 / 11)
    assert result["AP"] == pytest.approx((2 * 28 / 33 + 4 * 6 / 11 + 4 * 3 / 11) / 10)


def test_area_rule_and_empty_cases():
    # Same IoU-0.5 curve with the area rule: 0.5 * 1 + 0.5 * 2/3.
    recall = np.array([0.5, 0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 0.5, 2 / 3])
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.5 + 1 / 3)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(28 / 33)
    truth = {0: (np.zeros((1, 4)) + [0, 0, 5, 5], np.array([False]))}
    assert class_ap([], truth, 0.5) == 0.0  # nothing detected: no recall
    assert np.isnan(class_ap([(0, 0.9, np.array([0, 0, 5, 5.0]))], {0: (np.zeros((0, 4)), np.zeros(0, bool))}, 0.5))


def test_learning_rate_follows_warmup_and_steps():
    hp = DetectionHyperparameters()
    assert learning_rate(0, hp, 0.02) == pytest.approx(0.02 * 1e-3)
    assert learning_rate(100, hp, 0.02) == pytest.approx(0.02)
    assert learning_rate(17_999, hp, 0.02) == pytest.approx(0.02)
    assert learning_rate(18_000, hp, 0.02) == pytest.approx(0.002)
    assert learning_rate(22_000, hp, 0.02) == pytest.approx(0.0002)


@pytest.fixture(scope="module")
def devkit(sample_images, tmp_path_factory):
    return write_sample_devkit(sample_images, tmp_path_factory.mktemp("voc"))


def test_voc_reader_uses_07_plus_12_trainval_and_07_test(devkit):
    data = open_detection(str(devkit), SAMPLE_CLASSES)
    assert (len(data.train), len(data.test)) == (12, 8)
    assert data.train.where.endswith("2007trainval+2012trainval") and data.test.where.endswith("2007test")
    # Boxes are 0-based: the XML's 1-based xmin becomes xmin - 1.
    first = data.train.annotations[0]
    assert first.boxes.shape == (2, 4) and first.labels.tolist() == [1, 1]
    assert sum(a.difficult.sum() for a in data.test.annotations) == 1
    with pytest.raises(EvalError, match="has class 'lion', not one of the 20 classes"):
        open_detection(str(devkit))


def test_c4_detector_is_built_from_the_resnet_layers():
    from training.backbones import BackboneSpec, build_backbone

    backbone, _ = build_backbone(BackboneSpec("resnet50"))
    model = c4_detector(backbone, 20, DetectionHyperparameters(), (0.5,) * 3, (0.25,) * 3)
    assert model.backbone[-1] is backbone.layer3 and model.backbone.out_channels == 1024
    assert model.roi_heads.box_head.res5 is backbone.layer4
    assert model.roi_heads.box_roi_pool.output_size == 14 and model.roi_heads.box_roi_pool.spatial_scale == 1 / 16
    assert model.roi_heads.box_predictor.cls_score.out_features == 21


def test_detector_trains_and_scores_on_the_voc_sample(devkit, tmp_path):
    run = make_run(tmp_path / "run", resolution=64)
    torch.manual_seed(0)
    result, path = detection_eval(run, str(devkit), TINY, device="cpu", workers=0, classes=SAMPLE_CLASSES)
    written = json.loads(path.read_text())
    assert path.name == "detection-VOCdevkit.json"
    for key in ("AP", "AP50", "AP75"):
        assert 0.0 <= written[key] <= 1.0
    assert written["AP50"] >= written["AP75"] and (written["num_train"], written["num_test"]) == (12, 8)
    losses = [row["loss"] for row in written["history"]]
    assert len(losses) == TINY.iterations
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # it learns
    assert not (run / "eval" / "detection-VOCdevkit-state.pt").exists()  # resume state removed when done


def test_training_resumes_from_its_saved_state(devkit, tmp_path):
    from dataclasses import replace

    from training.backbones import BackboneSpec, build_backbone

    hp = replace(TINY, iterations=3, checkpoint_every=2)
    split = open_detection(str(devkit), SAMPLE_CLASSES).train
    state = tmp_path / "state.pt"
    backbone, _ = build_backbone(BackboneSpec("resnet18"))
    first = train_detector(c4_detector(backbone, 4, hp, (0.5,) * 3, (0.25,) * 3), split, hp, torch.device("cpu"), 0, state)
    assert [row["iteration"] for row in first] == [0, 1, 2]
    assert torch.load(state, weights_only=False)["iteration"] == 2
    backbone, _ = build_backbone(BackboneSpec("resnet18"))
    resumed = train_detector(c4_detector(backbone, 4, hp, (0.5,) * 3, (0.25,) * 3), split, hp, torch.device("cpu"), 0, state)
    assert [row["iteration"] for row in resumed] == [0, 1, 2]  # 0, 1 from the state, 2 trained again
    assert resumed[:2] == first[:2]


def test_hub_layout_detection_data_reads_like_the_devkit(devkit, tmp_path):
    """The same sample as Parquet in a Hub layout (image + objects{bbox, category, difficult}),
    read through the real `load_dataset`: same images, boxes, classes (from the ClassLabel)."""
    import datasets

    source = open_detection(str(devkit), SAMPLE_CLASSES)
    features = datasets.Features({
        "image": datasets.Image(),
        "objects": {"bbox": datasets.List(datasets.List(datasets.Value("float32"))),
                    "category": datasets.List(datasets.ClassLabel(names=list(SAMPLE_CLASSES))),
                    "difficult": datasets.List(datasets.Value("bool"))},
    })
    (tmp_path / "voc_hub" / "data").mkdir(parents=True)
    for split_name, split in (("train", source.train), ("test", source.test)):
        rows = {"image": [], "objects": []}
        for path, annotation in zip(split.images, split.annotations):
            rows["image"].append({"bytes": path.read_bytes(), "path": None})
            rows["objects"].append({"bbox": annotation.boxes.tolist(), "category": (annotation.labels - 1).tolist(),
                                    "difficult": annotation.difficult.tolist()})
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(tmp_path / "voc_hub" / "data" / f"{split_name}-00000-of-00001.parquet"))
    hub = open_detection(str(tmp_path / "voc_hub"))
    assert hub.classes == SAMPLE_CLASSES
    assert (len(hub.train), len(hub.test)) == (12, 8)
    for a, b in zip(source.test.annotations, hub.test.annotations):
        assert np.allclose(a.boxes, b.boxes) and (a.labels == b.labels).all() and (a.difficult == b.difficult).all()
    assert np.array_equal(np.asarray(hub.test.image(3)), np.asarray(source.test.image(3)))
