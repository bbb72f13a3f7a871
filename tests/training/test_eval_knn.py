"""The weighted kNN (k=20, T=0.07, cosine) agrees with scikit-learn's KNeighborsClassifier given
the same weighting, and the weighting matters (a uniform vote disagrees)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from training.eval.errors import EvalError
from training.eval.features import Features
from training.eval.knn import knn_eval, knn_predict

from .eval_support import pixel_features


@pytest.fixture(scope="module")
def features(cifar10_root):
    return pixel_features(cifar10_root, "train") + pixel_features(cifar10_root, "test")


def test_predictions_match_sklearn_with_exp_similarity_weights(features):
    x_train, y_train, x_test, y_test = features
    ours = knn_predict(torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), 10,
                       k=20, temperature=0.07).numpy()
    # Cosine distance d = 1 - similarity, so exp(similarity / T) = exp((1 - d) / T).
    weighted = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                                    weights=lambda d: np.exp((1 - d) / 0.07)).fit(x_train, y_train)
    assert (ours == weighted.predict(x_test)).mean() >= 0.99
    uniform = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute").fit(x_train, y_train)
    assert (ours == uniform.predict(x_test)).mean() < 0.97  # the vote weighting changes answers


def test_top1_is_the_fraction_of_correct_test_predictions(features):
    x_train, y_train, x_test, y_test = features
    result = knn_eval(Features(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                      Features(torch.from_numpy(x_test), torch.from_numpy(y_test)), 10, torch.device("cpu"))
    reference = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                                     weights=lambda d: np.exp((1 - d) / 0.07)).fit(x_train, y_train)
    assert abs(result["top1"] - reference.score(x_test, y_test)) <= 0.01
    assert (result["k"], result["temperature"]) == (20, 0.07)


def test_chunking_does_not_change_predictions(features):
    x_train, y_train, x_test, _ = features
    args = (torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), 10)
    assert torch.equal(knn_predict(*args, chunk=7), knn_predict(*args, chunk=1024))


def test_k_larger_than_the_training_set_is_refused():
    with pytest.raises(EvalError, match="k: 5 must be between 1 and the number of training images \\(3\\)"):
        knn_predict(torch.rand(3, 4), torch.tensor([0, 1, 0]), torch.rand(2, 4), 2, k=5)
