"""End-to-end training throughput, pairs/s (data + augmentation + step), per method, on this device:
this package's pipeline next to a plain reference pipeline measured in the same run.

- ours: the real training loop (`training.loop.Trainer`): decoded uint8 cache on the device, per-sample
  augmentation there, bf16 autocast + channels_last on CUDA, and on CUDA the step captured in a CUDA
  graph for methods that declare `capturable` (`--modes` to choose). The one-time decode is excluded
  (it is a cache); timing runs from the end of the warm-up steps to the last step, both read back
  from the device.
- reference: what a plain PyTorch script does: a CPU `DataLoader` (one worker per core, pinned
  memory) over the same Hugging Face rows, each image decoded with Pillow and transformed by
  torchvision (RandomResizedCrop, RandomRotation(15), flip, ColorJitter p=0.8, RandomGrayscale 0.2,
  Normalize: the paper's pipeline) per sample, then the same model and optimizer, eager step.

Data: `--data REPO_OR_DIR --config sp`, or by default a repo written here from the bundled sample's
full-resolution photos (ILSVRC ~500x375 and Imagenette 224x224, the sizes of real SP images), pairs
repeated to `--rows` rows so an epoch holds many batches.

    python benchmarks/train_throughput.py [--methods simclr,byol,...] [--steps 50] [--warmup 10]
        [--batch-size 256] [--resolution 64] [--backbone resnet50] [--stem imagenet|small|both]
        [--modes best|eager|graphs|compile,...] [--reference-steps 20] [--workers N]

The defaults suit one GPU (all 8 methods, ImageNet stem: per method about 60 steps of ours, 30 of
the reference, one model build and one graph capture). Prints the device, torch version, date and a
Markdown table; figures taken on a shared CPU machine are provisional.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "sample_data" / "imagenet" / "train"
from pair_manifest.protocol import METHODS as ALL_METHODS  # noqa: E402 - after the sys.path line


def write_bench_repo(out: Path, rows: int, min_side: int = 200) -> Path:
    """An `sp` config of `rows` pairs of the sample's photos with both sides >= min_side, pairs of
    consecutive files of each class, repeated; Hub layout (README configs + Parquet, original bytes)."""
    import datasets
    from PIL import Image

    base = []
    wnids = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())
    for label, wnid in enumerate(wnids):
        files = [f for f in sorted((SAMPLE / wnid).iterdir()) if min(Image.open(f).size) >= min_side]
        for a, b in zip(files[0::2], files[1::2]):
            base.append(dict(label=label, file_a=f"{wnid}/{a.name}", file_b=f"{wnid}/{b.name}",
                             image_a={"bytes": a.read_bytes(), "path": a.name},
                             image_b={"bytes": b.read_bytes(), "path": b.name}))
    if not base:
        raise SystemExit(f"no photos of at least {min_side}px in {SAMPLE}")
    records = [dict(row, pair_id=f"p{i:06d}") for i, row in zip(range(rows), itertools.cycle(base))]
    features = datasets.Features(pair_id=datasets.Value("string"), label=datasets.ClassLabel(names=wnids),
                                 file_a=datasets.Value("string"), file_b=datasets.Value("string"),
                                 image_a=datasets.Image(), image_b=datasets.Image())
    (out / "sp").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(records, features=features).to_parquet(str(out / "sp" / "train-00000-of-00001.parquet"))
    (out / "README.md").write_text("---\nconfigs:\n- config_name: sp\n  data_files:\n  - split: train\n    path:\n"
                                   "    - sp/*.parquet\n---\nbenchmark pairs (repeated sample photos)\n")
    return out


def measure_ours(args, method: str, stem: str, mode: str, capturable: bool, work: Path) -> dict:
    import torch

    from training import distributed
    from training.config import TrainConfig
    from training.loop import Trainer

    cfg = TrainConfig(data=args.data, config=args.config, method=method, out=str(work / f"ours-{method}-{stem}-{mode}"),
                      epochs=10_000, batch_size=args.batch_size, resolution=args.resolution, backbone=args.backbone,
                      stem=stem, steps=args.warmup + args.steps, log_every=args.warmup, checkpoint_every=10**9,
                      cache_dir=str(work / "decoded"), workers=args.workers, progress=False,
                      compile=mode == "compile",
                      cuda_graphs=mode in ("graphs", "compile") and torch.cuda.is_available() and capturable)
    ctx = distributed.setup("auto")
    trainer = Trainer(cfg, ctx)
    trainer.setup()
    trainer.run_steps()
    (first_step, first_time), (last_step, last_time) = trainer.flush_times[0], trainer.flush_times[-1]
    pairs = (last_step - first_step) * args.batch_size
    return {"pairs_per_s": pairs / (last_time - first_time), "loss": trainer.last_loss}


class ReferencePairs:
    """Rows of the Hugging Face dataset, decoded with Pillow and transformed by torchvision per sample."""

    def __init__(self, dataset, resolution: int):
        import torch
        from torchvision.transforms import v2

        self.dataset = dataset
        self.transform = v2.Compose([
            v2.RandomResizedCrop(resolution, antialias=True), v2.RandomRotation(15), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(0.2),
            v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])

    def __len__(self):
        return len(self.dataset)

    def _image(self, cell):
        import io

        from PIL import Image

        return Image.open(io.BytesIO(cell["bytes"])).convert("RGB")

    def __getitem__(self, i):
        row = self.dataset[i]
        return self.transform(self._image(row["image_a"])), self.transform(self._image(row["image_b"]))


def measure_reference(args, method: str, stem: str) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from training.backbones import BackboneSpec, build_backbone
    from training.data.source import open_rows, resolve_source
    from training.methods import method_module
    from training.optim import build_optimizer
    from training.step import EagerStep

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = open_rows(resolve_source(args.data, args.config))
    workers = args.workers or os.cpu_count() or 1
    loader = DataLoader(ReferencePairs(rows.dataset, args.resolution), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=True, prefetch_factor=4)
    module = method_module(method)
    hp = module.Hyperparameters()
    torch.manual_seed(0)
    backbone, width = build_backbone(BackboneSpec(args.backbone, stem, args.resolution))
    model = module.Method(backbone, width, hp).to(device, memory_format=torch.channels_last).train()
    lr_scale = args.batch_size / 256
    optimizer = build_optimizer(model, hp.recipe, hp.recipe.base_lr * lr_scale, lr_scale)
    step = EagerStep(model, model, optimizer, torch.bfloat16 if device.type == "cuda" else None, device,
                     clip_grad=hp.recipe.clip_grad)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    total = args.warmup + args.reference_steps
    started = None
    for i, (a, b) in zip(range(total), batches):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        a = a.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        b = b.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        loss = step(a, b, i)
        model.update_targets((i + 1) / 10_000)
    float(loss)  # wait for the device
    elapsed = time.perf_counter() - started
    del loader
    return {"pairs_per_s": args.reference_steps * args.batch_size / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--steps", type=int, default=50, help="timed steps of our pipeline")
    parser.add_argument("--reference-steps", type=int, default=20, help="timed steps of the reference")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--stem", default="imagenet", choices=("imagenet", "small", "both"))
    parser.add_argument("--modes", default="best",
                        help="comma list of eager, graphs, compile (compile = torch.compile + CUDA graph); best = "
                             "graphs on CUDA for capturable methods, else eager")
    parser.add_argument("--data", help="REPO_OR_DIR (default: a repo of repeated sample photos written here)")
    parser.add_argument("--config", default="sp")
    parser.add_argument("--rows", type=int, default=4096, help="pairs in the default benchmark repo")
    parser.add_argument("--workers", type=int, help="reference DataLoader workers and decode processes (default: cores)")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    import torch
    import torchvision

    from training.methods import method_module

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})"
    print(f"device: {device}; torch {torch.__version__}; torchvision {torchvision.__version__}; python "
          f"{platform.python_version()}; {os.cpu_count()} CPU cores; "
          f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"setup: {args.backbone}, {args.resolution}x{args.resolution}, batch {args.batch_size} pairs, "
          f"{args.warmup} warm-up + {args.steps} timed steps (reference {args.reference_steps})", flush=True)
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    if not args.data:
        args.data = str(write_bench_repo(work / "repo", args.rows))
        print(f"data: {args.rows} pairs of repeated full-resolution sample photos ({work / 'repo'})", flush=True)
    stems = ("imagenet", "small") if args.stem == "both" else (args.stem,)
    rows = []
    for stem, method in itertools.product(stems, [m for m in args.methods.split(",") if m]):
        capturable = getattr(method_module(method).Method, "capturable", False)
        modes = [m for m in args.modes.split(",") if m]
        if modes == ["best"]:
            modes = ["graphs" if (cuda and capturable) else "eager"]
        reference = None if args.skip_reference else measure_reference(args, method, stem)["pairs_per_s"]
        for mode in modes:
            if mode == "graphs" and not (cuda and capturable):
                print(f"{method}: skipping graphs (needs CUDA and a capturable method)", flush=True)
                continue
            try:
                ours = measure_ours(args, method, stem, mode, capturable, work)
                value = ours["pairs_per_s"]
            except Exception as error:  # noqa: BLE001 - one method failing must not hide the others
                print(f"{method} {stem} {mode}: failed: {type(error).__name__}: {error}", flush=True)
                value = None
            ratio = f"{value / reference:.1f}x" if (value and reference) else "-"
            row = (method, stem, mode, f"{value:,.0f}" if value else "failed",
                   f"{reference:,.0f}" if reference else "-", ratio)
            rows.append(row)
            print(" | ".join(row), flush=True)
    print("\n| method | stem | ours (mode) | ours pairs/s | reference pairs/s | ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for method, stem, mode, ours, reference, ratio in rows:
        print(f"| {method} | {stem} | {mode} | {ours} | {reference} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
