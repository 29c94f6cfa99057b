"""Offline kNN evaluation: ``python -m frossl_lit.knn ckpt=<run>/checkpoints/last.ckpt [knn.k=20 knn.temperature=0.07]``.

Weighted kNN (cosine similarity, top-k neighbours voting with exp(sim / T)) of the validation images against the
un-augmented training images, on the frozen backbone's features. Writes ``knn.json`` in the evaluation run dir.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.evaluation import extract_features, knn_predict
from frossl_lit.evaluation.offline import load_pretrained, report, resolve_device, run_evaluation
from frossl_lit.runtime.errors import UserError


def knn_evaluation(cfg: DictConfig) -> dict:
    _, datamodule, backbone = load_pretrained(cfg.ckpt, cfg.data_overrides, cfg.pretrain_config)
    device = resolve_device(cfg.device)
    backbone.to(device)
    transform = datamodule.augment.eval_transform
    bank_loader = datamodule.bank_dataloader()
    size = len(bank_loader.dataset)
    if cfg.knn.k > size:  # refused, not clamped: the figure would not be the k asked for
        raise UserError(f"knn.k={cfg.knn.k} is more than the {size} training images in the kNN bank; "
                        f"choose at most {size}, e.g. knn.k={min(20, size)}")
    bank, bank_labels = extract_features(backbone, bank_loader, transform, device, progress="kNN bank")
    queries, labels = extract_features(backbone, datamodule.val_dataloader(), transform, device, progress="kNN queries")
    scores = knn_predict(queries, bank, bank_labels, datamodule.num_classes, cfg.knn.k, cfg.knn.temperature)
    return report(cfg, "knn", scores, labels, datamodule.num_classes, k=cfg.knn.k, temperature=cfg.knn.temperature)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")  # absolute: see train.py
def _hydra_main(cfg: DictConfig) -> float:
    return run_evaluation("knn", knn_evaluation, cfg)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("evaluate")
    _hydra_main()


if __name__ == "__main__":
    main()
