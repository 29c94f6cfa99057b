"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes): the offline default dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from frossl_lit.data.memory import InMemoryDataModule


class DigitsDataModule(InMemoryDataModule):
    """Digits as 3-channel uint8 images, upsampled once to ``image_size``, with a stratified held-out split.

    scikit-learn ships no test split for this dataset, so ``val_fraction`` of it (stratified, seeded by
    ``split_seed``) is the labelled validation split for the probe and kNN; pretraining sees only the rest.
    """

    num_classes = 10

    def __init__(self, *args, image_size: int = 16, val_fraction: float = 0.2, split_seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.image_size, self.val_fraction, self.split_seed = image_size, val_fraction, split_seed

    def load(self):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # values 0..16
        if self.image_size != images.shape[-1]:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        labels = torch.from_numpy(digits.target).long()
        train_idx, val_idx = train_test_split(
            np.arange(len(labels)), test_size=self.val_fraction, stratify=digits.target, random_state=self.split_seed
        )
        train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
