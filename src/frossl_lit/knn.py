"""Offline kNN evaluation: ``python -m frossl_lit.knn ckpt=<run>/checkpoints/last.ckpt [knn.k=20 knn.temperature=0.07]``.

Weighted kNN (cosine similarity, top-k neighbours voting with exp(sim / T)) of the validation images against the
un-augmented training images, on the frozen backbone's features. Writes ``knn.json`` in the evaluation run dir.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from frossl_lit.callbacks.knn import knn_predict
from frossl_lit.evaluation import (
    embed,
    load_pretrained,
    resolve_device,
    run_evaluation,
    top_accuracies,
    write_result,
)


def knn_evaluation(cfg: DictConfig) -> dict:
    _, datamodule, backbone = load_pretrained(cfg.ckpt, cfg.data_overrides, cfg.pretrain_config)
    device = resolve_device(cfg.device)
    backbone.to(device)
    bank, bank_labels = embed(backbone, datamodule, datamodule.bank_dataloader(), device)
    queries, labels = embed(backbone, datamodule, datamodule.val_dataloader(), device)
    scores = knn_predict(queries, bank, bank_labels, datamodule.num_classes, cfg.knn.k, cfg.knn.temperature)
    result = {
        "ckpt": str(cfg.ckpt),
        **top_accuracies(scores, labels, datamodule.num_classes, "knn"),
        "k": cfg.knn.k,
        "temperature": cfg.knn.temperature,
        "num_val": len(labels),
    }
    out = write_result(cfg.paths.output_dir, "knn", result)
    print(f"kNN top-1 {result['knn_top1']:.4f} (k={cfg.knn.k}, T={cfg.knn.temperature}) → {out}")
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return run_evaluation("knn", knn_evaluation, cfg)


if __name__ == "__main__":
    main()
