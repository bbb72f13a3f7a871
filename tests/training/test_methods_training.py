"""DINO, VICReg, MoCo v2, SimSiam, Barlow Twins and SwAV trained a few dozen steps on real photos
(the bundled ImageNet sample, 32x32): the loss goes down, features do not collapse, EMA targets move
toward the online network (never the reverse) and get no gradient, the right network is evaluated,
and each method's own machinery (DINO's centre, temperature warm-up and frozen last layer, SwAV's
prototypes and queue, MoCo's queue and shuffled BatchNorm) does what its paper says."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from training.backbones import BackboneSpec, build_backbone
from training.ema import cosine_momentum
from training.loop import Schedules

SIZE = 32
# Small widths so a step takes milliseconds on a CPU; every other value is the paper's default.
CONFIGS = {
    "vicreg": dict(projector=(128, 128)),
    "barlow_twins": dict(projector=(128, 128)),
    "simsiam": dict(projector_dim=128, predictor_hidden=32),
    "mocov2": dict(queue_size=24, dim=32, momentum_ema=0.99),
    "swav": dict(projector_hidden=128, projector_dim=32, prototypes=30, queue_length=0, freeze_prototypes=0.0),
    # Constant teacher temperature 0.04 (main_dino.py's default) here: the paper's warm-up to 0.07
    # raises the teacher's entropy, and so the loss, over the first steps; tested on its own below.
    "dino": dict(out_dim=256, head_hidden=128, head_bottleneck=32, teacher_temp_start=0.04, teacher_temp=0.04),
}


def method_module(name):
    return importlib.import_module(f"training.methods.{name}")


def build(name, seed=0, **overrides):
    torch.manual_seed(seed)
    module = method_module(name)
    backbone, width = build_backbone(BackboneSpec("vit_tiny8", image_size=SIZE))
    return module.Method(backbone, width, module.Hyperparameters(**{**CONFIGS[name], **overrides})), backbone


@pytest.fixture(scope="module")
def images(sample_images):
    """32 real photos, two from each of 16 classes, resized to 32x32 and normalized: (32, 3, 32, 32)."""
    files = []
    for folder in sorted(p for p in sample_images.iterdir() if p.is_dir())[:16]:
        files += sorted(folder.glob("*.JPEG"))[:2]
    assert len(files) == 32
    batch = []
    for path in files:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
            batch.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(SIZE, SIZE, 3))
    x = torch.stack(batch).permute(0, 3, 1, 2).float() / 255
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)


def random_views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image random resized crop (20-32 px side) and horizontal flip."""
    out = []
    for image in x:
        side = int(torch.randint(20, SIZE + 1, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(0, SIZE - side + 1, (2,), generator=generator))
        crop = image[None, :, top:top + side, left:left + side]
        view = F.interpolate(crop, size=SIZE, mode="bilinear", align_corners=False)
        out.append(view.flip(3) if torch.rand(1, generator=generator) < 0.5 else view)
    return torch.cat(out)


def feature_spread(backbone: nn.Module, x: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of L2-normalized features, x sqrt(D): about 0.8 for
    these photos through a fresh ViT, 0 for a collapsed network."""
    with torch.no_grad():
        f = F.normalize(backbone(x), dim=1)
    return float(f.std(dim=0).mean() * f.shape[1] ** 0.5)


def trainable(method):
    return [p for p in method.parameters() if p.requires_grad]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_method_learns_on_real_photos_without_collapse(name, images):
    method, backbone = build(name)
    optimizer = torch.optim.AdamW(trainable(method), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    if name == "mocov2":
        # Four batches of 8 in turn; the queue (24 keys) then always holds the other three batches,
        # never stale keys of the images being trained. Filled first, as after the first steps of a run.
        batches = [images[i:i + 8] for i in range(0, 32, 8)]
        with torch.no_grad():
            for batch in batches[:3]:
                method(random_views(batch, generator), random_views(batch, generator))
        steps = 40
    else:
        batches, steps = [images], 30
    losses = []
    for step in range(steps):
        batch = batches[(step + 3) % len(batches)]
        loss = method(random_views(batch, generator), random_views(batch, generator))
        assert loss.dtype == torch.float32 and loss.ndim == 0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.update_targets((step + 1) / steps)
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first - last > max(0.05, 0.05 * abs(first)), f"{name}: loss {first:.3f} -> {last:.3f}"
    method.eval()
    spread = feature_spread(method.eval_backbone(), images)
    assert spread > 0.3, f"{name}: evaluated features collapsed (spread {spread:.3f})"
    # The evaluated network: the teacher for DINO, the online (query) encoder for MoCo, else the backbone.
    if name == "dino":
        assert method.eval_backbone() is method.teacher_backbone and method.eval_backbone() is not backbone
        pairs = zip(method.teacher_backbone.parameters(), backbone.parameters())
        differs = any(not torch.equal(t, s) for t, s in pairs)
        assert differs  # after training the choice matters
    elif name == "mocov2":
        assert method.eval_backbone() is backbone and method.eval_backbone() is not method.key_backbone
    else:
        assert method.eval_backbone() is backbone


TARGETS = {  # (online modules, their EMA copies, momentum at progress p)
    "dino": (("backbone", "head"), ("teacher_backbone", "teacher_head"), lambda hp, p: cosine_momentum(hp.teacher_momentum, p)),
    "mocov2": (("backbone", "head"), ("key_backbone", "key_head"), lambda hp, p: hp.momentum_ema),
}


def params_of(method, names):
    return [p for n in names for p in getattr(method, n).parameters()]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_ema_targets_move_toward_the_online_network_and_get_no_gradient(name, images):
    method, _ = build(name)
    online_names, target_names, momentum = TARGETS[name]
    optimizer = torch.optim.SGD(trainable(method), lr=0.5)
    loss = method(images[:8], images[8:16].flip(3))
    loss.backward()
    for p in params_of(method, target_names):  # no gradient into the targets
        assert not p.requires_grad and p.grad is None
    assert all(p.grad is not None for p in params_of(method, ("backbone",)))
    optimizer.step()  # now online != target

    online_before = [p.detach().clone() for p in params_of(method, online_names)]
    target_before = [p.detach().clone() for p in params_of(method, target_names)]
    m = momentum(method.hp, 0.25)
    method.update_targets(0.25)
    online_after = params_of(method, online_names)
    target_after = params_of(method, target_names)
    for before, after in zip(online_before, online_after):
        assert torch.equal(before, after)  # the online network is never pulled toward the target
    for t0, o, t1 in zip(target_before, online_before, target_after):
        assert torch.allclose(t1, m * t0 + (1 - m) * o, atol=1e-6)
    gap = lambda ts: sum(float((t - o).norm()) for t, o in zip(ts, online_before))  # noqa: E731
    assert gap(target_after) < gap(target_before)


def test_dino_schedules_follow_training_progress():
    method, _ = build("dino", teacher_temp_start=0.04, teacher_temp=0.07, teacher_temp_warmup=0.1)
    hp = method.hp
    assert method.teacher_temp.item() == pytest.approx(0.04)
    method.update_targets(0.05)
    assert method.teacher_temp.item() == pytest.approx(0.055)  # halfway through the linear warm-up
    method.update_targets(0.5)
    assert method.teacher_temp.item() == pytest.approx(0.07)
    assert cosine_momentum(hp.teacher_momentum, 0.0) == pytest.approx(0.996)
    assert cosine_momentum(hp.teacher_momentum, 1.0) == pytest.approx(1.0)
    # the loop's weight-decay schedule (training/loop.py Schedules) over DINO's recipe
    decay = Schedules(1, 101, 0, [], (hp.recipe.weight_decay, hp.recipe.weight_decay_end))
    assert (decay.weight_decay_factor(0) * 0.04 == pytest.approx(0.04)
            and decay.weight_decay_factor(100) * 0.04 == pytest.approx(0.4))
    assert decay.weight_decay_factor(50) * 0.04 == pytest.approx(0.22)
    # At the end the momentum is 1: the teacher no longer moves.
    with torch.no_grad():
        for p in method.head.parameters():
            p.add_(1.0)
    before = [p.clone() for p in method.teacher_head.parameters()]
    method.update_targets(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, method.teacher_head.parameters()))


def test_dino_freezes_its_last_layer_during_the_first_epoch_and_resumes_the_schedule(images):
    method, _ = build("dino", freeze_last_layer=0.1, teacher_temp_start=0.04, teacher_temp=0.07, teacher_temp_warmup=0.1)
    method(images[:8], images[8:16]).backward()
    assert method.head.last_layer_v.grad is None  # cancel_gradients_last_layer: no gradient at all
    assert method.head.mlp[0].weight.grad is not None
    method.zero_grad(set_to_none=True)
    method.update_targets(0.2)
    method(images[:8], images[8:16]).backward()
    assert method.head.last_layer_v.grad is not None
    # The schedule position survives a checkpoint: a fresh method loading the state is past the freeze.
    restored, _ = build("dino", seed=1, freeze_last_layer=0.1, teacher_temp_start=0.04, teacher_temp=0.07,
                        teacher_temp_warmup=0.1)
    restored.load_state_dict(method.state_dict())
    assert restored.teacher_temp.item() == pytest.approx(0.07)
    restored(images[:8], images[8:16]).backward()
    assert restored.head.last_layer_v.grad is not None


def test_dino_center_is_an_ema_of_the_teacher_outputs(images):
    method, _ = build("dino")
    a, b = images[:8], images[8:16]
    with torch.no_grad():
        teacher = method.teacher_head(method.teacher_backbone(torch.cat([a, b])))
    method(a, b)
    assert torch.allclose(method.center, 0.1 * teacher.mean(dim=0, keepdim=True), atol=1e-6)
    method(a, b)
    assert torch.allclose(method.center, 0.19 * teacher.mean(dim=0, keepdim=True), atol=1e-6)


def test_swav_prototypes_stay_unit_vectors_and_are_frozen_at_first(images):
    method, _ = build("swav", freeze_prototypes=0.1)
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(30), atol=1e-6)
    method(images[:8], images[8:16]).backward()
    assert method.prototypes.weight.grad is None and method.projector[0].weight.grad is not None
    method.update_targets(0.2)
    method.zero_grad(set_to_none=True)
    method(images[:8], images[8:16]).backward()
    assert method.prototypes.weight.grad is not None
    torch.optim.SGD(trainable(method), lr=1.0).step()
    assert not torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(30), atol=1e-3)
    method.update_targets(0.3)  # main_swav.py re-normalizes before every step
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(30), atol=1e-6)


def test_swav_queue_fills_from_its_start_and_then_joins_the_sinkhorn_batch(images):
    from training.methods.swav import swav_loss

    method, _ = build("swav", queue_length=16, queue_start=0.5)
    views = [(images[i:i + 8], images[i + 8:i + 16].flip(3)) for i in (0, 8, 16)]
    method(*views[0])
    assert method.queue.abs().sum() == 0  # before queue_start nothing is kept
    method.update_targets(0.5)
    for step, (a, b) in enumerate(views[:2]):
        method(a, b)
        with torch.no_grad():
            z = F.normalize(method.projector(method.backbone(torch.cat([a, b]))), dim=1)
        assert torch.allclose(method.queue[0, :8], z[:8], atol=1e-5)  # newest first, one row block per crop
        assert torch.allclose(method.queue[1, :8], z[8:], atol=1e-5)
        method.update_targets(0.6 + 0.1 * step)
    assert method._use_queue  # full: its oldest rows are written
    # The loss now balances the codes over queue + batch, exactly swav_loss with the queue's scores.
    a, b = views[2]
    queue = method.queue.clone()
    with torch.no_grad():
        z = F.normalize(method.projector(method.backbone(torch.cat([a, b]))), dim=1)
        w = method.prototypes.weight
        expected = swav_loss(z[:8] @ w.T, z[8:] @ w.T, 0.1, 0.05, 3, queue[0] @ w.T, queue[1] @ w.T)
        without = swav_loss(z[:8] @ w.T, z[8:] @ w.T, 0.1, 0.05, 3)
    got = method(a, b)
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
    assert abs(got.item() - without.item()) > 1e-4
    restored, _ = build("swav", seed=1, queue_length=16, queue_start=0.5)
    restored.load_state_dict(method.state_dict())
    assert restored._use_queue and restored._fill_queue and torch.equal(restored.queue, method.queue)


def test_mocov2_queue_holds_the_latest_normalized_keys_and_wraps(images):
    method, _ = build("mocov2", queue_size=20)
    batches = [(images[i:i + 8], images[i + 8:i + 16]) for i in (0, 8, 16)]
    keys = []
    for q_view, k_view in batches:
        with torch.no_grad():
            keys.append(F.normalize(method.key_head(method.key_backbone(k_view)), dim=1))
        method(q_view, k_view)
    assert method.queue_ptr.item() == 24 % 20
    assert torch.allclose(method.queue[8:16], keys[1], atol=1e-6)
    assert torch.allclose(method.queue[16:20], keys[2][:4], atol=1e-6)
    assert torch.allclose(method.queue[0:4], keys[2][4:], atol=1e-6)
    with pytest.raises(ValueError, match="queue_size"):
        method(images, images)  # a batch of 32 cannot fit a queue of 20


def test_mocov2_shuffled_batchnorm_gives_each_key_the_statistics_of_a_random_chunk():
    """With BatchNorm in the key encoder, each key must come from a forward over a random chunk of
    the batch (MoCo §3.3), not over the whole batch that its query saw."""
    from training.methods import mocov2

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    method = mocov2.Method(backbone, 8, mocov2.Hyperparameters(queue_size=16, dim=4, shuffle_bn_splits=4))
    view = torch.randn(8, 3, 6, 6)
    encode = lambda x: method.key_head(method.key_backbone(x))  # noqa: E731
    with torch.no_grad():
        keys = method._keys(view)
        whole = encode(view)
        pair_keys = {(i, j): encode(view[[i, j]])[0] for i in range(8) for j in range(8) if i != j}
    assert not torch.allclose(keys, whole, atol=1e-4)
    partner = {}
    for i in range(8):
        matches = [j for j in range(8) if j != i and torch.allclose(keys[i], pair_keys[(i, j)], atol=1e-5)]
        assert len(matches) == 1, f"key {i} matches chunks with {matches}"
        partner[i] = matches[0]
    assert all(partner[partner[i]] == i for i in range(8))  # 4 chunks of 2: a perfect matching
    with torch.no_grad():
        second = method._keys(view)
    assert not torch.allclose(second, keys, atol=1e-5)  # a new permutation each step


def test_update_targets_refuses_progress_outside_0_1():
    for name in ("dino", "mocov2", "swav"):
        method, _ = build(name)
        with pytest.raises(ValueError, match="progress"):
            method.update_targets(1.5)


def test_methods_refuse_mismatched_views(images):
    for name in sorted(CONFIGS):
        method, _ = build(name)
        with pytest.raises(ValueError, match="view_a and view_b"):
            method(images[:8], images[:4])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_view_batches_are_refused_before_the_network_runs(name):
    """Views of two shapes, or not (N, C, H, W), name the problem; the BatchNorm- and variance-based
    methods also refuse a single image, which would otherwise train on a zero variance."""
    method, _ = build(name)
    with pytest.raises(ValueError, match=r"view_a and view_b must be \(N, C, H, W\) batches of one shape, "
                                         r"got \(4, 3, 32, 32\) and \(4, 3, 16, 16\)"):
        method(torch.zeros(4, 3, SIZE, SIZE), torch.zeros(4, 3, 16, 16))
    with pytest.raises(ValueError, match="batches of one shape"):
        method(torch.zeros(3, SIZE, SIZE), torch.zeros(3, SIZE, SIZE))
    single = {"vicreg": "VICReg needs 2 or more images per batch for its variance, got 1",
              "barlow_twins": "Barlow Twins needs 2 or more images per batch, got 1",
              "simsiam": "SimSiam's BatchNorm needs 2 or more images per batch, got 1"}
    if name in single:
        with pytest.raises(ValueError, match=single[name]):
            method(torch.zeros(1, 3, SIZE, SIZE), torch.zeros(1, 3, SIZE, SIZE))


def test_dino_with_a_resnet_keeps_the_teacher_temperature_at_0_04_without_warm_up():
    """main_dino.py's defaults, which the DINO README's ResNet-50 command leaves in place; the ViT
    recipe warms up from 0.04 to 0.07 over 30 of 300 epochs."""
    from training.config import build_hyperparameters

    dino = method_module("dino")
    resnet_hp = build_hyperparameters(dino, {"out_dim": 256, "head_hidden": 128, "head_bottleneck": 32},
                                      backbone="resnet18")
    assert (resnet_hp.teacher_temp_start, resnet_hp.teacher_temp, resnet_hp.teacher_temp_warmup) == (0.04, 0.04, 0.0)
    backbone, width = build_backbone(BackboneSpec("resnet18", "small", SIZE))
    method = dino.Method(backbone, width, resnet_hp)
    for progress in (0.0, 0.01, 0.1, 0.5, 1.0):
        method.update_targets(progress)
        assert method.teacher_temp.item() == pytest.approx(0.04)
    vit_hp = build_hyperparameters(dino, {}, backbone="vit_s8")
    assert vit_hp.teacher_temp_at(0.0) == pytest.approx(0.04) and vit_hp.teacher_temp_at(0.05) == pytest.approx(0.055)
    assert vit_hp.teacher_temp_at(0.1) == pytest.approx(0.07)
