"""The benchmark's job through lightly 1.6.0, the way its documentation shows it: a torch Dataset of PIL images
under ``lightly.transforms.SimCLRTransform`` (two views; set to the solo-learn CIFAR recipe), a plain PyTorch
loop, ``lightly.loss.FroSSLLoss``, AdamW over ``lightly.models.utils.get_weight_decay_parameters`` (no decay on
biases and norms) and ``lightly.utils.scheduler.CosineWarmupScheduler`` per step.

    experiments/peers/.venv/bin/python -m experiments.peers.run_lightly --root data/cifar10 --workers 2 --out DIR
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from experiments.peers import common as c


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, 3, 32, 32) images as PIL, through ``transform``; (views, label) items."""

    def __init__(self, images, labels, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index].transpose(1, 2, 0))), int(self.labels[index])


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--root", required=True)
    cli.add_argument("--workers", type=int, default=0)
    cli.add_argument("--epochs", type=int, default=3)
    cli.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (throughput runs)")
    cli.add_argument("--fraction", type=float, default=1.0, help="a stratified subset of the 45k training images")
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)
    from lightly.loss import FroSSLLoss
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.transforms import SimCLRTransform
    from lightly.utils.scheduler import CosineWarmupScheduler

    c.threads()
    torch.manual_seed(0)
    train_x, train_y, _, _ = c.split(args.root, args.fraction)
    brightness, contrast, saturation, hue = c.JITTER
    transform = SimCLRTransform(
        input_size=c.SIZE, cj_prob=c.JITTER_PROB, cj_strength=1.0, cj_bright=brightness, cj_contrast=contrast,
        cj_sat=saturation, cj_hue=hue, min_scale=c.SCALE[0], random_gray_scale=c.GRAY, gaussian_blur=0.0,
        hf_prob=c.FLIP, normalize={"mean": list(c.MEAN), "std": list(c.STD)})
    loader = torch.utils.data.DataLoader(
        PILImages(train_x, train_y, transform), batch_size=c.BATCH, shuffle=True, drop_last=True,
        num_workers=args.workers, persistent_workers=args.workers > 0)
    backbone = c.backbone()
    projector = c.projector(backbone.out_dim)
    criterion = FroSSLLoss()
    decay, no_decay = get_weight_decay_parameters([backbone, projector])
    optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=c.LR, weight_decay=c.WEIGHT_DECAY)
    total = len(loader) * args.epochs
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=int(round(c.WARMUP_FRACTION * total)),
                                      max_epochs=total, end_value=c.FINAL_FRACTION)
    clock = c.StepClock()
    backbone.train()
    projector.train()
    done = False
    for epoch in range(args.epochs):
        clock.epoch_start()
        mark = time.perf_counter()
        for views, _ in loader:
            mark_before = mark
            t0 = time.perf_counter()
            wait = t0 - mark
            embeddings = [projector(backbone(view)) for view in views]
            t1 = time.perf_counter()
            loss = criterion(embeddings)
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            scheduler.step()
            mark = time.perf_counter()
            for name, seconds in (("data wait (+ augmentation in workers)", wait), ("forward", t1 - t0), ("loss", t2 - t1),
                                  ("backward", t3 - t2), ("optimizer step", mark - t3), ("step", mark - mark_before)):
                clock.part(name, seconds)
            clock.step_end(len(views[0]))
            if args.max_steps and clock.total_steps >= args.max_steps:
                done = True
                break
        clock.epoch_end()
        c.save_backbone(backbone, args.out, epoch + 1)
        if done:
            break
    c.write_result(args.out, clock, framework="lightly", loss=loss.item(), workers=args.workers)


if __name__ == "__main__":
    main()
