"""The benchmark's job through stable-pretraining 0.1.8, as its README's complete example shows it: a dict dataset
(``spt.data.FromTorchDataset``) under ``spt.data.transforms.MultiViewTransform`` (two views of the solo-learn
CIFAR recipe), ``spt.data.DataModule``, ``spt.Module`` with the built-in ``stable_pretraining.forward.vicreg`` and
``spt.losses.VICRegLoss`` (stable-pretraining ships no FroSSL), its ``optim`` dict (AdamW with
``exclude_bias_norm``, ``LinearWarmupCosineAnnealing`` per step), a Lightning Trainer, run by ``spt.Manager``.

    experiments/peers/.venv/bin/python -m experiments.peers.run_spt --root data/cifar10 --workers 2 --out DIR
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from PIL import Image

from experiments.peers import common as c


class PILPairs(torch.utils.data.Dataset):
    """uint8 (N, 3, 32, 32) images as ``(PIL image, label)``: what ``FromTorchDataset`` wraps."""

    def __init__(self, images, labels) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return Image.fromarray(self.images[index].transpose(1, 2, 0)), int(self.labels[index])


class Timing(L.Callback):
    """The shared step clock on Lightning's hooks, and the backbone saved after each epoch."""

    def __init__(self, clock: c.StepClock, out: str) -> None:
        self.clock, self.out, self.marks = clock, out, {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.clock.epoch_start()
        self.marks = {"end": time.perf_counter()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.marks["start"] = time.perf_counter()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.marks["backward"] = time.perf_counter()

    def on_after_backward(self, trainer, pl_module) -> None:
        self.marks["backward_end"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now, m = time.perf_counter(), self.marks
        if "backward" in m and "backward_end" in m:
            for name, seconds in (("data wait (+ augmentation in workers)", m["start"] - m["end"]),
                                  ("forward + loss", m["backward"] - m["start"]), ("backward", m["backward_end"] - m["backward"]),
                                  ("optimizer step + logging", now - m["backward_end"]), ("step", now - m["end"])):
                self.clock.part(name, seconds)
        self.clock.step_end(len(batch["views"][0]["image"]))
        self.marks = {"end": time.perf_counter()}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.epoch_end()
        c.save_backbone(pl_module.backbone, self.out, trainer.current_epoch + 1)


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--root", required=True)
    cli.add_argument("--workers", type=int, default=0)
    cli.add_argument("--epochs", type=int, default=3)
    cli.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (throughput runs)")
    cli.add_argument("--fraction", type=float, default=1.0, help="a stratified subset of the 45k training images")
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)
    import stable_pretraining as spt
    from stable_pretraining import forward
    from stable_pretraining.data import transforms

    c.threads()
    train_x, train_y, _, _ = c.split(args.root, args.fraction)
    brightness, contrast, saturation, hue = c.JITTER
    view = transforms.Compose(
        transforms.RGB(),
        transforms.RandomResizedCrop((c.SIZE, c.SIZE), scale=c.SCALE),
        transforms.RandomHorizontalFlip(p=c.FLIP),
        transforms.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=c.JITTER_PROB),
        transforms.RandomGrayscale(p=c.GRAY),
        transforms.ToImage(mean=list(c.MEAN), std=list(c.STD)),
    )
    dataset = spt.data.FromTorchDataset(PILPairs(train_x, train_y), names=["image", "label"],
                                        transform=transforms.MultiViewTransform([view, view]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=c.BATCH, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    backbone = c.backbone()
    module = spt.Module(
        backbone=backbone, projector=c.projector(backbone.out_dim), forward=forward.vicreg,
        vicreg_loss=spt.losses.VICRegLoss(),
        optim={"optimizer": {"type": "AdamW", "lr": c.LR, "weight_decay": c.WEIGHT_DECAY, "exclude_bias_norm": True},
               "scheduler": {"type": "LinearWarmupCosineAnnealing", "peak_step": c.WARMUP_FRACTION,
                             "total_steps": len(loader) * args.epochs,  # the whole schedule, as the others
                             "start_factor": 1e-3, "end_lr": c.LR * c.FINAL_FRACTION},
               "interval": "step"},
    )
    clock = c.StepClock()
    trainer = L.Trainer(max_epochs=args.epochs, max_steps=args.max_steps, accelerator="cpu", devices=1,
                        callbacks=[Timing(clock, args.out)], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    spt.Manager(trainer=trainer, module=module, data=spt.data.DataModule(train=loader), seed=0)()
    c.write_result(args.out, clock, framework="stable-pretraining", workers=args.workers)


if __name__ == "__main__":
    main()
