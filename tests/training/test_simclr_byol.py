"""SimCLR and BYOL against direct float64 implementations of their formulas; the optimizer,
schedule and EMA they train with."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from training.backbones import BackboneSpec, build_backbone
from training.ema import cosine_momentum, ema_update_
from training.methods import byol, simclr
from training.optim import LARS, build_optimizer
from training.recipe import with_overrides
from training.schedule import WarmupCosine
from training.step import clip_per_parameter_


def nt_xent_float64(z_a, z_b, temperature):
    """SimCLR Eq. 1 written out: l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t), mean over 2N."""
    z = torch.cat([z_a, z_b]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        sims = [float(z[i] @ z[k]) / temperature for k in range(n2)]
        denominator = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -(sims[positive] - math.log(denominator))
    return total / n2


def test_simclr_loss_matches_float64_formula_even_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    expected = nt_xent_float64(z_a, z_b, 0.1)
    assert simclr.simclr_loss(z_a, z_b, 0.1).item() == pytest.approx(expected, rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = simclr.simclr_loss(z_a, z_b, 0.1)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(expected, rel=1e-5)
    # identical views of distinct unit vectors: a low loss; swapped partners: a higher one
    assert simclr.simclr_loss(z_a, z_a, 0.1) < simclr.simclr_loss(z_a, z_a.roll(1, 0), 0.1)


def test_simclr_loss_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError, match="must both be"):
        simclr.simclr_loss(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        simclr.simclr_loss(torch.randn(4, 3), torch.randn(4, 3), 0.0)


def test_byol_loss_matches_float64_formula():
    g = torch.Generator().manual_seed(1)
    p, z = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    pd, zd = p.double(), z.double()
    expected = (2 - 2 * (pd * zd).sum(1) / (pd.norm(dim=1) * zd.norm(dim=1))).mean().item()
    assert byol.byol_loss(p, z).item() == pytest.approx(expected, rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert byol.byol_loss(p, z).item() == pytest.approx(expected, rel=1e-6)


def _tiny_backbone():
    return build_backbone(BackboneSpec("vit_tiny8", image_size=16))


def test_byol_sums_both_directions_and_trains_only_the_online_network():
    torch.manual_seed(0)
    backbone, width = _tiny_backbone()
    hp = byol.Hyperparameters(projection_hidden=32, projection_dim=8, prediction_hidden=32)
    method = byol.Method(backbone, width, hp)
    with torch.no_grad():  # make the target differ from the online network
        for p in method.target_backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a, b = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
    loss = method(a, b)
    reference = copy.deepcopy(method).double()

    def direction(online_view, target_view):
        prediction = reference.predictor(reference.projector(reference.backbone(online_view.double())))
        target = reference.target_projector(reference.target_backbone(target_view.double()))
        cosine = (prediction * target).sum(1) / (prediction.norm(dim=1) * target.norm(dim=1))
        return (2 - 2 * cosine).mean()

    expected = (direction(a, b) + direction(b, a)).item()  # summed (BYOL Eq. 2), not averaged
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())
    assert all(p.grad is not None for p in method.predictor.parameters())
    assert method.eval_backbone() is method.backbone  # the online encoder is evaluated


def test_byol_target_follows_the_cosine_ema_schedule():
    torch.manual_seed(0)
    backbone, width = _tiny_backbone()
    method = byol.Method(backbone, width, byol.Hyperparameters(projection_hidden=16, projection_dim=8,
                                                               prediction_hidden=16))
    assert method.momentum(0.0) == pytest.approx(0.996) and method.momentum(1.0) == pytest.approx(1.0)
    assert method.momentum(0.5) == pytest.approx(0.998)
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(torch.randn_like(p))
    before = [p.detach().clone().double() for p in method.target_backbone.parameters()]
    online = [p.detach().clone().double() for p in method.backbone.parameters()]
    method.update_targets(0.25)
    tau = 1 - (1 - 0.996) * (math.cos(math.pi * 0.25) + 1) / 2
    for t_old, o, t_new in zip(before, online, method.target_backbone.parameters()):
        assert torch.allclose(t_new.double(), tau * t_old + (1 - tau) * o, atol=1e-6)
    frozen = [p.detach().clone() for p in method.target_backbone.parameters()]
    method.update_targets(1.0)  # tau = 1 at the end of training: the target stops moving
    assert all(torch.equal(a, b) for a, b in zip(frozen, method.target_backbone.parameters()))


def test_ema_update_refuses_mismatched_networks():
    with pytest.raises(ValueError, match="parameter tensors"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)


def test_simclr_head_matches_the_official_layout_and_evaluates_the_backbone():
    backbone, width = _tiny_backbone()
    method = simclr.Method(backbone, width)
    linears = [m for m in method.projector if isinstance(m, nn.Linear)]
    assert [l.out_features for l in linears] == [width, 128] and all(l.bias is None for l in linears)
    assert not method.projector[-1].bias.requires_grad  # last BatchNorm without shift
    assert method.eval_backbone() is backbone


def test_lars_step_matches_the_formula_and_spares_biases_and_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    hp = with_overrides(simclr.Hyperparameters(), weight_decay=0.1)
    optimizer = build_optimizer(model, hp.recipe, peak_lr=0.5, lr_scale=1.0)
    names = {g["name"]: g for g in optimizer.param_groups}
    assert names["weights"]["lars"] and names["weights"]["weight_decay"] == 0.1
    assert not names["1d"]["lars"] and names["1d"]["weight_decay"] == 0.0
    before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {n: p.grad.detach().clone().double() for n, p in model.named_parameters()}
    for _ in range(2):  # two steps: momentum buffers matter on the second
        optimizer.step()
    for name, p in model.named_parameters():
        w, g = before[name], grads[name]
        buf = torch.zeros_like(w)
        for _ in range(2):
            if w.ndim > 1:
                d = g + 0.1 * w
                d = d * (0.001 * w.norm() / d.norm())
            else:
                d = g
            buf = 0.9 * buf + d
            w = w - 0.5 * buf
        assert torch.allclose(p.double(), w, atol=1e-6), name


def test_sgd_decays_every_tensor_and_lars_can_adapt_biases_when_asked():
    model = nn.Linear(3, 2)
    sgd = build_optimizer(model, with_overrides(simclr.Hyperparameters(), optimizer="sgd", weight_decay=1e-4).recipe,
                          0.1, 1.0)
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 1e-4] and not any(g["lars"] for g in sgd.param_groups)

    adapt_all = with_overrides(simclr.Hyperparameters(), lars_exclude_bias_and_norm=False)
    lars = build_optimizer(model, adapt_all.recipe, 0.1, 1.0)
    assert all(g["lars"] for g in lars.param_groups)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(model, with_overrides(simclr.Hyperparameters(), optimizer="adam").recipe, 0.1, 1.0)
    assert isinstance(sgd, LARS)


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(peak=1.0, total_steps=110, warmup_steps=10, final=0.1)
    assert schedule(0) == pytest.approx(0.1) and schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0) and schedule(109) == pytest.approx(0.1)
    midpoint = schedule(10 + 99 // 2)
    assert 0.5 < midpoint < 0.6
    values = [schedule(s) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        WarmupCosine(peak=1.0, total_steps=5, warmup_steps=6)


def test_per_parameter_clipping_bounds_each_gradient_norm():
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.1, 0.0])
    clip_per_parameter_([a, b], 1.0)
    assert a.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(b.grad, torch.tensor([0.1, 0.0]))
