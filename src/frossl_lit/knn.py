"""Offline kNN evaluation: ``python -m frossl_lit.knn ckpt=<run>/checkpoints/last.ckpt [knn.k=20 knn.temperature=0.07]``.

Weighted kNN (cosine similarity, top-k neighbours voting with exp(sim / T)) of the validation images against the
un-augmented training images, on the frozen backbone's features. Writes ``knn.json`` in the evaluation run dir.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from frossl_lit.evaluation import extract_features, knn_predict
from frossl_lit.evaluation.offline import load_pretrained, report, resolve_device, run_evaluation


def knn_evaluation(cfg: DictConfig) -> dict:
    _, datamodule, backbone = load_pretrained(cfg.ckpt, cfg.data_overrides, cfg.pretrain_config)
    device = resolve_device(cfg.device)
    backbone.to(device)
    transform = datamodule.augment.eval_transform
    bank, bank_labels = extract_features(backbone, datamodule.bank_dataloader(), transform, device, progress="kNN bank")
    queries, labels = extract_features(backbone, datamodule.val_dataloader(), transform, device, progress="kNN queries")
    scores = knn_predict(queries, bank, bank_labels, datamodule.num_classes, cfg.knn.k, cfg.knn.temperature)
    return report(cfg, "knn", scores, labels, datamodule.num_classes, k=cfg.knn.k, temperature=cfg.knn.temperature)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return run_evaluation("knn", knn_evaluation, cfg)


if __name__ == "__main__":
    main()
