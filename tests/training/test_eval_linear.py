"""The linear probe agrees with scikit-learn's LogisticRegression on the same fixed features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from training.eval.errors import EvalError
from training.eval.features import Features
from training.eval.linear import fit_logistic_regression, linear_probe, standardize, stratified_held_out

from .eval_support import pixel_features


@pytest.fixture(scope="module")
def features(cifar10_root):
    """Real, fixed features: 8x8 grayscale pixels of the bundled CIFAR-10 sample (600 train, 300 test)."""
    x_train, y_train = pixel_features(cifar10_root, "train")
    x_test, y_test = pixel_features(cifar10_root, "test")
    x_train, x_test = standardize(torch.from_numpy(x_train), torch.from_numpy(x_test))
    return x_train, torch.from_numpy(y_train), x_test, torch.from_numpy(y_test)


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-2, 1e-1])
def test_fit_matches_sklearn_logistic_regression(features, weight_decay):
    x_train, y_train, x_test, y_test = features
    ours = fit_logistic_regression(x_train, y_train, 10, weight_decay)
    # Same objective: sklearn minimizes C * sum(CE) + ||W||^2 / 2, ours mean(CE) + wd/2 ||W||^2.
    reference = LogisticRegression(C=1 / (weight_decay * len(y_train)), tol=1e-10, max_iter=10_000)
    reference.fit(x_train.numpy(), y_train.numpy())
    scale = np.abs(reference.coef_).max()
    assert np.abs(ours.weight.numpy() - reference.coef_).max() < 0.01 * scale
    ours_predicted = ours.predict(x_test).numpy()
    reference_predicted = reference.predict(x_test.numpy())
    assert (ours_predicted == reference_predicted).mean() >= 0.99
    ours_top1 = (ours_predicted == y_test.numpy()).mean()
    reference_top1 = (reference_predicted == y_test.numpy()).mean()
    assert abs(ours_top1 - reference_top1) <= 0.01


def test_probe_picks_weight_decay_on_held_out_train_and_matches_sklearn_at_that_value(cifar10_root):
    x_train, y_train = pixel_features(cifar10_root, "train")
    x_test, y_test = pixel_features(cifar10_root, "test")
    train = Features(torch.from_numpy(x_train), torch.from_numpy(y_train))
    test = Features(torch.from_numpy(x_test), torch.from_numpy(y_test))
    decays = (1e-4, 1e-2, 1.0)
    result = linear_probe(train, test, 10, torch.device("cpu"), weight_decays=decays)
    assert [row["weight_decay"] for row in result["sweep"]] == list(decays)
    best = max(result["sweep"], key=lambda row: (row["held_out_top1"], row["weight_decay"]))
    assert result["weight_decay"] == best["weight_decay"]

    # The held-out choice, re-done with scikit-learn on the same split, picks the same value.
    fit, held = stratified_held_out(y_train, 0.1)
    fit_x, held_x = standardize(torch.from_numpy(x_train[fit]), torch.from_numpy(x_train[held]))
    sklearn_scores = []
    for decay in decays:
        model = LogisticRegression(C=1 / (decay * len(fit)), tol=1e-10, max_iter=10_000)
        model.fit(fit_x.numpy(), y_train[fit])
        sklearn_scores.append((model.score(held_x.numpy(), y_train[held]), decay))
    assert max(sklearn_scores)[1] == result["weight_decay"]

    # And the final test top-1 is scikit-learn's at that weight decay.
    full_x, test_x = standardize(torch.from_numpy(x_train), torch.from_numpy(x_test))
    model = LogisticRegression(C=1 / (result["weight_decay"] * len(y_train)), tol=1e-10, max_iter=10_000)
    model.fit(full_x.numpy(), y_train)
    assert abs(result["top1"] - model.score(test_x.numpy(), y_test)) <= 0.01
    assert 0.15 < result["top1"] < 0.6  # 8x8 gray pixels: above chance (0.1), far from perfect


def test_held_out_split_is_stratified_disjoint_and_reproducible():
    y = np.repeat(np.arange(5), 20)
    fit, held = stratified_held_out(y, 0.1)
    assert np.intersect1d(fit, held).size == 0 and fit.size + held.size == y.size
    assert np.bincount(y[held]).tolist() == [2] * 5
    again_fit, again_held = stratified_held_out(y, 0.1)
    assert (again_held == held).all() and (again_fit == fit).all()


def test_a_class_with_one_training_image_is_refused_by_name():
    with pytest.raises(EvalError, match="class 3 has 1 training image"):
        stratified_held_out(np.array([0, 0, 1, 1, 2, 2, 3]), 0.1)
