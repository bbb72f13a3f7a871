"""Network embedders: torchvision and timm models, and this project's own SSL checkpoints.

Pretrained weights are fetched the way each library does it, once, into its usual cache:
torchvision's weights API into torch's hub cache (`torch.hub.get_dir()/checkpoints`), timm's
weights from the Hugging Face Hub (`hf_hub_download`: `HF_ENDPOINT`, `HF_HOME`, tokens and
progress bars as everywhere else). Offline, only cached files are used and a missing one is named
with how to provide it; a download that fails says what was fetched from where. The classifier
head is removed, so a model gives its pooled features; scoring normalises them to unit length.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from curation_app.proposals.embedding import CropPreparer, Embedder, EmbedderSpec, safe_label
from pair_manifest.errors import UserError
from pair_manifest.images import sha256_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_NAMES = ("fc", "head", "heads", "classifier")  # torchvision/timm names of the classifier
BATCH = 64


class TorchEmbedder(Embedder):
    """A network without its head, run in the main process on batches prepared by the workers."""

    standardize = "center"

    def __init__(self, label: str, cache_key: str, model: nn.Module, *, resize: int, crop: int,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.label, self.cache_key = label, cache_key
        self.model = model.eval()
        self.resize, self.crop = int(resize), int(crop)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preparer(self) -> CropPreparer:
        return CropPreparer(self.resize, self.crop)

    @torch.inference_mode()
    def embed(self, prepared: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(prepared), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(prepared[start:start + BATCH]))  # (N, H, W, 3) uint8
            pixels = batch.permute(0, 3, 1, 2).float().div_(255.0)
            features = self.model((pixels - self.mean) / self.std)
            outputs.append(features.flatten(1).float().numpy())
        return np.concatenate(outputs).astype(np.float32)


def drop_head(model: nn.Module, what: str) -> str:
    """Replace the classifier by the identity; returns its attribute name."""
    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            setattr(model, name, nn.Identity())
            return name
    raise UserError(f"{what}: no classifier head found (looked for {', '.join(HEAD_NAMES)})")


def load_weights(model: nn.Module, state: dict, head: str, where: str) -> None:
    """Load a state dict into a headless model: every backbone weight must be there; the head's
    own weights (a classifier trained for some label set) are ignored."""
    if not isinstance(state, dict):
        raise UserError(f"{where}: not a state dict (found {type(state).__name__})")
    for key in ("state_dict", "model"):  # common wrappers of saved checkpoints
        if isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head + ".")}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:3]) or "none"
        unexpected = ", ".join(result.unexpected_keys[:3]) or "none"
        raise UserError(f"{where}: weights do not fit this model (missing {missing}; unexpected {unexpected})")


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise UserError(f"{path}: cannot be read as a PyTorch state dict ({type(error).__name__}: {error})") from None


OFFLINE_HOW = "downloads are off (--offline or HF_HUB_OFFLINE=1)"
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes on the Hub, preferred first


def torchvision_embedder(spec: EmbedderSpec, *, offline: bool = False) -> TorchEmbedder:
    from torchvision import models

    what = f"torchvision:{spec.name}"
    if spec.name not in models.list_models(module=models):
        raise UserError(f"{what}: not a torchvision classification model (e.g. resnet50, convnext_tiny, vit_b_16)")
    model = models.get_model(spec.name, weights=None)
    head = drop_head(model, what)
    if spec.weights:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise UserError(f"{what}: weights file {path} not found")
        load_weights(model, _torch_load(path), head, str(path))
        return TorchEmbedder(safe_label(f"torchvision-{spec.name}@{path.stem}"),
                             f"torchvision/{spec.name}/{sha256_file(path)[:16]}", model, resize=256, crop=224)
    weights = models.get_model_weights(spec.name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        if offline:
            raise UserError(f"{what}: pretrained weights {weights} are not in torch's cache ({cached}) and {OFFLINE_HOW}: "
                            f"run once with a connection, copy the file there, or pass torchvision:{spec.name}@FILE")
        _download_torchvision(weights, cached, spec.name)
    load_weights(model, _torch_load(cached), head, str(cached))
    preset = weights.transforms()
    return TorchEmbedder(f"torchvision-{spec.name}", f"torchvision/{spec.name}/{cached.name}", model,
                         resize=preset.resize_size[0], crop=preset.crop_size[0], mean=preset.mean, std=preset.std)


def _download_torchvision(weights, cached: Path, name: str) -> None:
    """torchvision's own download (`torch.hub.load_state_dict_from_url`: progress bar, hash check,
    written to a temporary file and renamed, so an interrupted download leaves nothing half there)."""
    import sys

    try:
        weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)
    except Exception as error:  # noqa: BLE001 - urllib, ssl, hash and disk errors all mean "not fetched"
        reason = getattr(error, "reason", None) or error
        raise UserError(f"torchvision:{name}: could not download {weights.url} into {cached.parent} ({reason}); "
                        f"copy the file there, or pass torchvision:{name}@FILE") from None


def timm_embedder(spec: EmbedderSpec, *, offline: bool = False) -> TorchEmbedder:
    what = f"timm:{spec.name}"
    if importlib.util.find_spec("timm") is None:
        raise UserError(f"{what}: the 'timm' package is not installed (pip install timm)")
    import timm
    from timm.data import resolve_data_config

    try:
        model = timm.create_model(spec.name, pretrained=False)
    except RuntimeError as error:
        raise UserError(f"{what}: {error}") from None
    hub_id = (model.pretrained_cfg or {}).get("hf_hub_id")
    if not hub_id:
        raise UserError(f"{what}: timm knows no Hugging Face Hub weights for this model (pick a name with a "
                        "pretrained tag, e.g. vit_small_patch14_dinov2.lvd142m)")
    path = _timm_weights(hub_id, what, offline)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = _torch_load(path)
    head = (model.pretrained_cfg or {}).get("classifier") or "head"  # e.g. "head", "fc", "head.fc"
    model.reset_classifier(0)  # timm's own way to drop the head: forward returns pooled features
    load_weights(model, state, head, str(path))
    config = resolve_data_config({}, model=model)
    crop = config["input_size"][-1]
    return TorchEmbedder(f"timm-{spec.name}", f"timm/{spec.name}/{sha256_file(path)[:16]}", model,
                         resize=round(crop / config.get("crop_pct", 0.875)), crop=crop,
                         mean=config["mean"], std=config["std"])


def _timm_weights(hub_id: str, what: str, offline: bool) -> Path:
    """The weights file of a timm Hub repo: from the Hugging Face cache, else downloaded into it."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    cached = [try_to_load_from_cache(hub_id, name) for name in TIMM_WEIGHT_FILES]
    path = next((Path(f) for f in cached if isinstance(f, str)), None)
    if path is not None:
        return path
    if offline:
        raise UserError(f"{what}: weights ({hub_id}) are not in the Hugging Face cache and {OFFLINE_HOW}: "
                        f"run once with a connection (or `hf download {hub_id}`)")
    problems = []
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its retry warnings would repeat the one line below
    try:
        for name in TIMM_WEIGHT_FILES:
            try:
                return Path(hf_hub_download(hub_id, name))
            except LocalEntryNotFoundError as error:  # no connection (a subclass of EntryNotFoundError)
                cause = error.__cause__ or error.__context__ or error
                raise UserError(f"{what}: could not download {hub_id}/{name} from the Hugging Face Hub at "
                                f"{_endpoint()} ({_first_line(cause)})") from None
            except EntryNotFoundError:
                problems.append(f"no {name}")
            except (HfHubHTTPError, OSError) as error:
                raise UserError(f"{what}: could not download {hub_id}/{name} from the Hugging Face Hub at "
                                f"{_endpoint()} ({_first_line(error)})") from None
    finally:
        quiet.setLevel(level)
    raise UserError(f"{what}: the Hub repo {hub_id} holds no weights ({', '.join(problems)})")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def checkpoint_embedder(spec: EmbedderSpec) -> TorchEmbedder:
    """The evaluation backbone of a training run (config.json + checkpoints/last.pt); images are
    resized to the run's pretraining resolution, normalised with its statistics."""
    run_dir = Path(spec.name).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"checkpoint:{run_dir}: no such run folder")
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise UserError(f"checkpoint:{run_dir}: no checkpoints/last.pt in the run folder")
    from training.checkpoints import load_eval_backbone

    try:
        model, config = load_eval_backbone(run_dir)
    except Exception as error:  # noqa: BLE001 - any failure to load is a bad run folder
        if getattr(error, "exit_code", None) is not None:
            raise
        raise UserError(f"checkpoint:{run_dir}: cannot load the backbone ({type(error).__name__}: {error})") from None
    backbone = config.get("backbone") if isinstance(config.get("backbone"), dict) else {}
    resolution = config.get("resolution", backbone.get("image_size", 64))
    if not isinstance(resolution, int) or resolution < 8:
        raise UserError(f"{run_dir / 'config.json'}: field 'resolution' must be an integer >= 8, got {resolution!r}")
    # Normalised as in training (training.augment: ImageNet mean and std).
    return TorchEmbedder(safe_label(f"checkpoint-{run_dir.resolve().name}"),
                         f"checkpoint/{sha256_file(checkpoint)[:16]}", model, resize=resolution, crop=resolution)
