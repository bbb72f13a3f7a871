"""The losses of DINO, VICReg, MoCo v2, SimSiam, Barlow Twins and SwAV against direct float64
implementations of their formulas (plain Python loops over math floats, written from the papers, not
from the implementations), their float32 result under bf16 autocast, and their argument checks."""
from __future__ import annotations

import math

import pytest
import torch

from training.methods import barlow_twins, dino, mocov2, simsiam, swav, vicreg

TOL = dict(rel=1e-5, abs=1e-5)


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.double().tolist()


def col(m, j):
    return [r[j] for r in m]


def mean(xs):
    return sum(xs) / len(xs)


def dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def norm(u):
    return math.sqrt(dot(u, u))


def log_softmax(xs):
    top = max(xs)
    log_z = top + math.log(sum(math.exp(x - top) for x in xs))
    return [x - log_z for x in xs]


def softmax(xs):
    return [math.exp(v) for v in log_softmax(xs)]


# ---------------------------------------------------------------------------------------- VICReg

def vicreg_reference(za, zb, lam, mu, nu, eps):
    """Bardes et al. eq. (1) as main_vicreg.py computes it: variance averaged over the branches."""
    n, d = len(za), len(za[0])
    invariance = sum((za[i][j] - zb[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def variance(z):
        total = 0.0
        for j in range(d):
            m = mean(col(z, j))
            var = sum((z[i][j] - m) ** 2 for i in range(n)) / (n - 1)
            total += max(0.0, 1.0 - math.sqrt(var + eps))
        return total / d

    def covariance(z):
        means = [mean(col(z, j)) for j in range(d)]
        total = 0.0
        for j in range(d):
            for k in range(d):
                if j != k:
                    c = sum((z[i][j] - means[j]) * (z[i][k] - means[k]) for i in range(n)) / (n - 1)
                    total += c * c
        return total / d

    return lam * invariance + mu * (variance(za) + variance(zb)) / 2 + nu * (covariance(za) + covariance(zb))


def test_vicreg_loss_matches_float64_reference():
    # scale 0.5: some dimensions below the hinge's std of 1, so all three terms are active
    za, zb = rand(9, 6, seed=1, scale=0.5), rand(9, 6, seed=2, scale=0.5) + rand(9, 6, seed=3, scale=0.5)
    got = vicreg.vicreg_loss(za, zb, 25.0, 25.0, 1.0, 1e-4)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert got.item() == pytest.approx(vicreg_reference(rows(za), rows(zb), 25.0, 25.0, 1.0, 1e-4), **TOL)


def test_vicreg_variance_term_is_averaged_over_the_two_branches():
    # Collapsed embeddings: std 0 in every dimension, so each branch's hinge is exactly 1 - sqrt(eps).
    z = torch.ones(8, 4)
    got = vicreg.vicreg_loss(z, z, sim_coeff=0.0, std_coeff=1.0, cov_coeff=0.0, variance_eps=1e-4)
    assert got.item() == pytest.approx(1.0 - math.sqrt(1e-4), rel=1e-6)  # summing would give 2x


# ----------------------------------------------------------------------------------- Barlow Twins

def barlow_reference(za, zb, lambd, eps):
    n, d = len(za), len(za[0])

    def standardize(z):
        out = [[0.0] * d for _ in range(n)]
        for j in range(d):
            m = mean(col(z, j))
            var = sum((z[i][j] - m) ** 2 for i in range(n)) / n  # BatchNorm's biased variance
            for i in range(n):
                out[i][j] = (z[i][j] - m) / math.sqrt(var + eps)
        return out

    a, b = standardize(za), standardize(zb)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k][i] * b[k][j] for k in range(n)) / n
            loss += (1.0 - c) ** 2 if i == j else lambd * c * c
    return loss


def test_barlow_twins_loss_matches_float64_reference():
    za = rand(10, 7, seed=4, scale=3.0) + 1.5
    zb = za * 0.5 + rand(10, 7, seed=5)
    got = barlow_twins.barlow_twins_loss(za, zb, 0.0051, 1e-5)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(barlow_reference(rows(za), rows(zb), 0.0051, 1e-5), **TOL)


# ---------------------------------------------------------------------------------------- SimSiam

def test_simsiam_loss_matches_reference_and_stops_the_gradient():
    pa, pb, za, zb = (rand(6, 5, seed=s).requires_grad_() for s in (6, 7, 8, 9))
    p_a, p_b, z_a, z_b = rows(pa.detach()), rows(pb.detach()), rows(za.detach()), rows(zb.detach())
    cos = lambda u, v: dot(u, v) / (norm(u) * norm(v))  # noqa: E731
    d_ab = -mean([cos(p_a[i], z_b[i]) for i in range(6)])
    d_ba = -mean([cos(p_b[i], z_a[i]) for i in range(6)])
    expected = (d_ab + d_ba) / 2
    got = simsiam.simsiam_loss(pa, pb, za, zb)
    assert got.item() == pytest.approx(expected, **TOL)
    got.backward()
    assert pa.grad is not None and pb.grad is not None
    assert za.grad is None and zb.grad is None  # the stop-gradient: targets get nothing


# ---------------------------------------------------------------------------------------- MoCo v2

def test_mocov2_loss_matches_float64_reference():
    q, k = rand(5, 4, seed=10), rand(5, 4, seed=11)
    queue = torch.nn.functional.normalize(rand(12, 4, seed=12), dim=1)
    tau = 0.2
    qs, ks, negs = rows(q), rows(k), rows(queue)
    losses = []
    for i in range(5):
        qi = [v / norm(qs[i]) for v in qs[i]]
        ki = [v / norm(ks[i]) for v in ks[i]]
        logits = [dot(qi, ki) / tau] + [dot(qi, n) / tau for n in negs]
        losses.append(-log_softmax(logits)[0])
    got = mocov2.mocov2_loss(q, k, queue, tau)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(mean(losses), **TOL)


# ------------------------------------------------------------------------------------------- SwAV

def sinkhorn_reference(scores, eps, iterations):
    """Caron et al. 2020 §3.1 / Alg. 1: Q = exp(S/ε)^T, alternately rescale rows (prototypes) to
    1/K and columns (samples) to 1/B; return Q^T scaled so each sample's code sums to 1."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[j][i] / eps) for j in range(b)] for i in range(k)]  # K x B
    total = sum(sum(r) for r in q)
    q = [[v / total for v in r] for r in q]
    for _ in range(iterations):
        for i in range(k):
            s = sum(q[i])
            q[i] = [v / s / k for v in q[i]]
        for j in range(b):
            s = sum(q[i][j] for i in range(k))
            for i in range(k):
                q[i][j] = q[i][j] / s / b
    return [[q[i][j] * b for i in range(k)] for j in range(b)]  # B x K


def swav_reference(sa, sb, tau, eps, iterations, queue_a=None, queue_b=None):
    n = len(sa)
    codes_a = sinkhorn_reference((queue_a or []) + sa, eps, iterations)[-n:]
    codes_b = sinkhorn_reference((queue_b or []) + sb, eps, iterations)[-n:]

    def cross_entropy(codes, scores):
        return mean([-dot(codes[i], log_softmax([s / tau for s in scores[i]])) for i in range(n)])

    return (cross_entropy(codes_a, sb) + cross_entropy(codes_b, sa)) / 2


def cosines(n, k, seed):
    """Scores as SwAV makes them: cosines between unit embeddings and unit prototypes."""
    z = torch.nn.functional.normalize(rand(n, 6, seed=seed), dim=1)
    c = torch.nn.functional.normalize(rand(k, 6, seed=seed + 100), dim=1)
    return z @ c.T


def test_sinkhorn_matches_reference_and_balances_the_prototypes():
    scores = cosines(8, 5, seed=13)
    got = swav.sinkhorn_knopp(scores, 0.05, 3)
    expected = sinkhorn_reference(rows(scores), 0.05, 3)
    for g, e in zip(got.tolist(), expected):
        assert g == pytest.approx(e, **TOL)
    assert got.sum(dim=1).tolist() == pytest.approx([1.0] * 8, abs=1e-6)  # each code is a distribution
    # Run to convergence: every prototype gets B/K of the batch (the equipartition constraint).
    balanced = swav.sinkhorn_knopp(scores, 0.05, 200)
    assert balanced.sum(dim=0).tolist() == pytest.approx([8 / 5] * 5, rel=1e-4)


def test_swav_loss_matches_float64_reference_with_and_without_a_queue():
    sa, sb = cosines(6, 5, seed=14), cosines(6, 5, seed=15)
    qa, qb = cosines(10, 5, seed=16), cosines(10, 5, seed=17)
    got = swav.swav_loss(sa, sb, 0.1, 0.05, 3)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(swav_reference(rows(sa), rows(sb), 0.1, 0.05, 3), **TOL)
    with_queue = swav.swav_loss(sa, sb, 0.1, 0.05, 3, qa, qb)
    expected = swav_reference(rows(sa), rows(sb), 0.1, 0.05, 3, rows(qa), rows(qb))
    assert with_queue.item() == pytest.approx(expected, **TOL)
    assert abs(with_queue.item() - got.item()) > 1e-4  # the queue really changes the codes


def test_swav_codes_carry_no_gradient():
    sa, sb = cosines(6, 5, seed=18).requires_grad_(), cosines(6, 5, seed=19).requires_grad_()
    swav.swav_loss(sa, sb).backward()
    # Only the prediction side has gradient: d/ds_a comes from log softmax(s_a / τ) against q_b,
    # whose rows sum to 1, so each row of the gradient sums to 0 (no path through the codes).
    assert sa.grad.sum(dim=1).abs().max().item() < 1e-6


# ------------------------------------------------------------------------------------------- DINO

def dino_reference(s_a, s_b, t_a, t_b, center, tau_s, tau_t):
    def h(teacher, student):
        t = softmax([(v - c) / tau_t for v, c in zip(teacher, center)])
        log_s = log_softmax([v / tau_s for v in student])
        return -dot(t, log_s)

    n = len(s_a)
    return (mean([h(t_a[i], s_b[i]) for i in range(n)]) + mean([h(t_b[i], s_a[i]) for i in range(n)])) / 2


def test_dino_loss_matches_float64_reference():
    s_a, s_b, t_a, t_b = (rand(5, 9, seed=s) for s in (20, 21, 22, 23))
    center = rand(9, seed=24, scale=0.3)
    got = dino.dino_loss(s_a, s_b, t_a, t_b, center, 0.1, 0.04)
    assert got.dtype == torch.float32
    expected = dino_reference(rows(s_a), rows(s_b), rows(t_a), rows(t_b), center.tolist(), 0.1, 0.04)
    assert got.item() == pytest.approx(expected, **TOL)
    # the teacher temperature may be a 0-d tensor (the method's warm-up buffer)
    with_tensor = dino.dino_loss(s_a, s_b, t_a, t_b, center, 0.1, torch.tensor(0.04))
    assert with_tensor.item() == pytest.approx(expected, **TOL)


# ------------------------------------------------------------------------------ float32 under bf16

LOSS_CALLS = {
    "vicreg": lambda x, y: vicreg.vicreg_loss(x, y),
    "barlow_twins": lambda x, y: barlow_twins.barlow_twins_loss(x, y),
    "simsiam": lambda x, y: simsiam.simsiam_loss(x, y, y, x),
    "mocov2": lambda x, y: mocov2.mocov2_loss(x, y, torch.nn.functional.normalize(y.flip(0), dim=1)),
    "swav": lambda x, y: swav.swav_loss(x, y),
    "dino": lambda x, y: dino.dino_loss(x, y, y, x, torch.zeros(x.shape[1])),
}


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_losses_are_float32_under_bf16_autocast(name):
    x = rand(16, 32, seed=30).float() * 0.3
    y = (x + rand(16, 32, seed=31).float() * 0.1)
    reference = LOSS_CALLS[name](x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = LOSS_CALLS[name](x, y)
        got_from_bf16 = LOSS_CALLS[name](x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32 and got_from_bf16.dtype == torch.float32
    # Bit-for-bit the float32 computation: no matmul inside the loss was cast down to bf16.
    assert got.item() == reference.item()


# ---------------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("call, message", [
    (lambda: vicreg.vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2)), "same shape"),
    (lambda: vicreg.vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3)), "at least 2"),
    (lambda: barlow_twins.barlow_twins_loss(torch.zeros(4, 3), torch.zeros(5, 3)), "same shape"),
    (lambda: simsiam.simsiam_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 2)), "one shape"),
    (lambda: mocov2.mocov2_loss(torch.ones(4, 3), torch.ones(4, 3), torch.ones(8, 3), temperature=0.0), "temperature"),
    (lambda: mocov2.mocov2_loss(torch.ones(4, 3), torch.ones(4, 3), torch.ones(8, 2)), "queue must be"),
    (lambda: swav.swav_loss(torch.ones(4, 3), torch.ones(4, 3), temperature=-0.1), "temperature"),
    (lambda: swav.sinkhorn_knopp(torch.ones(4, 3), epsilon=0.0), "epsilon"),
    (lambda: dino.dino_loss(*(torch.ones(4, 3),) * 4, torch.zeros(3), student_temp=0.0), "temperatures"),
    (lambda: dino.dino_loss(*(torch.ones(4, 3),) * 4, torch.zeros(5)), "center"),
])
def test_losses_refuse_bad_arguments_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("module, field, value", [
    (dino, "student_temp", 0.0), (dino, "teacher_temp", -1.0), (dino, "teacher_momentum", 1.5),
    (mocov2, "temperature", 0.0), (mocov2, "queue_size", 0), (swav, "epsilon", 0.0),
    (swav, "queue_start", 2.0), (vicreg, "projector", ()), (barlow_twins, "lambd", -1.0),
    (simsiam, "projector_dim", 0),
])
def test_hyperparameters_refuse_bad_values_naming_the_field(module, field, value):
    with pytest.raises(ValueError, match=field):
        module.Hyperparameters(**{field: value})


def test_dino_uses_the_recipe_published_for_the_backbone():
    from training.config import build_hyperparameters
    from training.methods import dino

    resnet = build_hyperparameters(dino, {}, backbone="resnet50")
    vit = build_hyperparameters(dino, {"base_lr": 1e-3}, backbone="vit_s8")
    assert (resnet.recipe.optimizer, resnet.recipe.base_lr, resnet.recipe.weight_decay_end) == ("sgd", 0.03, 1e-4)
    assert (vit.recipe.optimizer, vit.recipe.base_lr, vit.recipe.weight_decay, vit.recipe.weight_decay_end) == \
        ("adamw", 1e-3, 0.04, 0.4)
