"""Save a PNG grid of augmented views, to see what a recipe does: one row per image, original then its V views.

    python -m frossl_lit.show_views data=cifar10 data.root=DIR [augment=cifar10_asymmetric] [+grid.images=8]

Composes the same config as training (any data / augment override applies) and writes ``views.png`` into the
run directory (or ``+grid.out=PATH``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchvision.utils import save_image

from frossl_lit.config import CONF_DIR
from frossl_lit.data import datamodule as build_datamodule
from frossl_lit.runtime.errors import exits_on_user_error


def view_grid(datamodule, images: int = 8) -> torch.Tensor:
    """(rows × (1 + V), C, S, S) images in [0, 1]: each row an original and its views, all resized to one size."""
    datamodule.setup()
    augment = datamodule.augment
    dataset = datamodule.train_set
    picks = torch.linspace(0, len(dataset) - 1, images).long()
    if getattr(dataset, "batched_indexing", False):
        originals = dataset[picks][0]
    else:  # file datasets crop in the loader: take each item's per-view crops
        items = [dataset[int(i)][0] for i in picks]
        originals = [torch.stack([item[v] for item in items]) for v in range(len(items[0]))]
    views = datamodule.make_views(originals)  # as training makes them
    originals = originals if isinstance(originals, torch.Tensor) else originals[0]
    size = max(v.shape[-1] for v in views)
    mean, std = augment.mean, augment.std
    shown = [F.interpolate(originals.float() / 255, size=(size, size), mode="nearest")]
    shown += [F.interpolate(v * std + mean, size=(size, size), mode="nearest").clamp(0, 1) for v in views]
    return torch.stack(shown, dim=1).flatten(0, 1)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")  # absolute: see train.py
@exits_on_user_error()
def main(cfg: DictConfig) -> None:
    grid = cfg.get("grid", {})
    datamodule = build_datamodule(cfg.data)
    tiles = view_grid(datamodule, int(grid.get("images", 8)))
    out = Path(grid.get("out", Path(cfg.paths.output_dir) / "views.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, out, nrow=tiles.shape[0] // int(grid.get("images", 8)), padding=2, pad_value=1.0)
    print(f"wrote {out}: {int(grid.get('images', 8))} images, original + {datamodule.augment.total_views} views each")


if __name__ == "__main__":
    main()
