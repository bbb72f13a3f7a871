"""Weighted k-nearest-neighbour classifier on frozen features.

The protocol of InstDisc (Wu et al. 2018, §3.4) as used by DINO's `eval_knn.py` (Caron et al.
2021): L2-normalized features, cosine similarity to every training feature, the k most similar
neighbours vote for their class with weight exp(similarity / T), and the class with the largest
summed weight wins. Defaults k = 20, T = 0.07 are DINO's. It needs no training and no tuning,
which makes it a useful second opinion beside the linear probe.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from training.eval.errors import EvalError
from training.eval.features import Features

K = 20
TEMPERATURE = 0.07
CHUNK = 1024  # queries per similarity block: (CHUNK x N_train) floats at a time


@torch.no_grad()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, num_classes: int,
                k: int = K, temperature: float = TEMPERATURE, chunk: int = CHUNK) -> torch.Tensor:
    """Predicted class of each query row: (Q,) int64."""
    if k < 1 or k > train_x.shape[0]:
        raise EvalError(f"k: {k} must be between 1 and the number of training images ({train_x.shape[0]})")
    if temperature <= 0:
        raise EvalError(f"temperature: {temperature} must be positive")
    bank = F.normalize(train_x.float(), dim=1)  # (N, D)
    predictions = []
    for start in range(0, query_x.shape[0], chunk):
        queries = F.normalize(query_x[start:start + chunk].float(), dim=1)  # (q, D)
        similarity, index = (queries @ bank.T).topk(k, dim=1)  # (q, k)
        weights = (similarity / temperature).exp()  # (q, k)
        votes = torch.zeros(queries.shape[0], num_classes, device=queries.device)
        votes.scatter_add_(1, train_y[index], weights)  # (q, C)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_eval(train: Features, test: Features, num_classes: int, device: torch.device,
             k: int = K, temperature: float = TEMPERATURE) -> dict:
    predicted = knn_predict(train.x.to(device), train.y.to(device), test.x.to(device), num_classes, k, temperature)
    return {
        "top1": float((predicted == test.y.to(device)).float().mean()),
        "k": k,
        "temperature": temperature,
        "protocol": "weighted kNN, cosine similarity, votes exp(sim/T) (InstDisc; DINO eval_knn.py)",
    }
