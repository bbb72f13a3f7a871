"""Average precision for VOC detection, as MoCo's detection numbers (and so the paper's Table 3).

MoCo v2 fine-tunes in detectron2 and reports its `PascalVOCDetectionEvaluator`: per class, the
detections sorted by score are matched greedily to unmatched ground truth of IoU >= t (objects
marked difficult neither count as positives nor as false positives), AP is the VOC2007 11-point
interpolated precision (`use_07_metric`, the official VOC07 devkit rule) or, for other years, the
area under the interpolated curve; the mean over classes is taken at t = 0.50, 0.55, ..., 0.95.
"AP" is the mean over those ten thresholds (COCO-style), "AP50" and "AP75" single thresholds.
Results here are fractions (detectron2 prints percentages).

detectron2 adds 1 to predicted xmin/ymin, compares them with the 1-based XML boxes and uses
"+1" widths; with ground truth read as (xmin - 1, ymin - 1, xmax, ymax) that is exactly the
plain continuous IoU used below.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a precision/recall curve (detectron2 `voc_ap`, the VOC devkit's rule)."""
    if use_07_metric:  # 11-point: mean of the best precision at recall >= 0, 0.1, ..., 1
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.arange(0.0, 1.1, 0.1)]))
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    for i in range(precision.size - 1, 0, -1):  # precision envelope
        precision[i - 1] = max(precision[i - 1], precision[i])
    change = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[change + 1] - recall[change]) * precision[change + 1]))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (K, 4) boxes, continuous coordinates."""
    ix0 = np.maximum(boxes[:, 0], box[0])
    iy0 = np.maximum(boxes[:, 1], box[1])
    ix1 = np.minimum(boxes[:, 2], box[2])
    iy1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def class_ap(detections: list[tuple[int, float, np.ndarray]], truth: dict[int, tuple[np.ndarray, np.ndarray]],
             iou_threshold: float, use_07_metric: bool = True) -> float:
    """AP of one class. detections: (image, score, box); truth: image -> (boxes (K, 4), difficult (K,))."""
    positives = sum(int((~difficult).sum()) for _, difficult in truth.values())
    if positives == 0:
        return float("nan")
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])
    used = {image: np.zeros(len(boxes), dtype=bool) for image, (boxes, _) in truth.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, i in enumerate(order):
        image, _, box = detections[i]
        boxes, difficult = truth.get(image, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        if len(boxes) == 0:
            fp[rank] = 1
            continue
        overlaps = box_iou(box, boxes)
        best = int(overlaps.argmax())
        if overlaps[best] > iou_threshold:  # detectron2/VOC devkit: strictly greater
            if difficult[best]:
                continue  # neither true nor false positive
            if not used[image][best]:
                tp[rank] = 1
                used[image][best] = True
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


def evaluate_detections(predictions: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        ground_truth: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        class_names: tuple[str, ...], use_07_metric: bool = True) -> dict:
    """predictions: image -> (boxes, scores, labels 1..C); ground_truth: image -> (boxes, labels, difficult)."""
    per_class_detections = defaultdict(list)
    for image, (boxes, scores, labels) in predictions.items():
        for box, score, label in zip(boxes, scores, labels):
            per_class_detections[int(label)].append((image, float(score), np.asarray(box, dtype=np.float64)))
    per_class_truth = defaultdict(dict)
    for image, (boxes, labels, difficult) in ground_truth.items():
        for label in range(1, len(class_names) + 1):
            mask = labels == label
            per_class_truth[label][image] = (np.asarray(boxes[mask], dtype=np.float64), difficult[mask])
    table = {}  # threshold -> per-class AP
    for threshold in IOU_THRESHOLDS:
        table[threshold] = [class_ap(per_class_detections[c], per_class_truth[c], threshold, use_07_metric)
                            for c in range(1, len(class_names) + 1)]
    scored = [c for c in range(len(class_names)) if not np.isnan(table[0.5][c])]  # classes present in test
    means = {t: float(np.mean([table[t][c] for c in scored])) if scored else 0.0 for t in IOU_THRESHOLDS}
    return {
        "AP": float(np.mean(list(means.values()))),
        "AP50": means[0.5],
        "AP75": means[0.75],
        "AP_by_iou": {f"{t:.2f}": v for t, v in means.items()},
        "AP50_by_class": {class_names[c]: table[0.5][c] for c in scored},
        "metric": "VOC07 11-point" if use_07_metric else "VOC area",
    }
