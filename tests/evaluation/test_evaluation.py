"""The evaluation package: kNN votes, feature extraction, the linear head and protocol, offline loading."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from frossl_lit.evaluation import extract_features, knn_predict, linear_head, linear_optimizer, top_k_metrics
from frossl_lit.evaluation.offline import load_pretrained, report
from frossl_lit.runtime.errors import UserError


def test_knn_scores_are_the_weighted_votes_of_the_k_nearest():
    generator = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(50, 8, generator=generator), torch.randn(7, 8, generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    scores = knn_predict(queries, bank, labels, num_classes=4, k=5, temperature=0.5, chunk_size=3)
    similarity = nn.functional.normalize(queries, dim=1) @ nn.functional.normalize(bank, dim=1).T
    for q in range(7):
        expected = torch.zeros(4)
        for index in similarity[q].argsort(descending=True)[:5]:
            expected[labels[index]] += torch.exp(similarity[q, index] / 0.5)
        torch.testing.assert_close(scores[q], expected)


def test_extract_features_applies_the_transform_in_eval_mode_and_restores_the_mode():
    seen_modes = []

    class Probe(nn.Module):
        out_dim = 2

        def forward(self, x):
            seen_modes.append(self.training)
            return x.flatten(1)[:, :2]

    backbone = Probe().train()
    loader = [(torch.full((3, 1, 2, 2), 4, dtype=torch.uint8), torch.tensor([0, 1, 2]))] * 2
    features, labels = extract_features(backbone, loader, lambda x: x.float() / 2, torch.device("cpu"))
    assert features.shape == (6, 2) and (features == 2.0).all() and labels.tolist() == [0, 1, 2] * 2
    assert seen_modes == [False, False] and backbone.training
    empty, none = extract_features(backbone, [], lambda x: x, torch.device("cpu"))
    assert empty.shape == (0, 2) and none.shape == (0,)


def test_linear_head_and_protocol_optimizers():
    head = linear_head(6, 3)
    assert not head[0].affine and head[1].out_features == 3
    settings = OmegaConf.create({"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9,
                                 "scheduler": "step", "lr_decay_steps": [2], "gamma": 0.1, "epochs": 4})
    optimizer, scheduler = linear_optimizer(head, settings)
    assert isinstance(optimizer, torch.optim.Adam) and isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR)
    with pytest.raises(UserError, match="linear.optimizer='lbfgs' must be sgd or adam"):
        linear_optimizer(head, OmegaConf.merge(settings, {"optimizer": "lbfgs"}))
    with pytest.raises(UserError, match="linear.scheduler='poly' must be cosine or step"):
        linear_optimizer(head, OmegaConf.merge(settings, {"scheduler": "poly"}))


def test_top_k_metrics_with_and_without_top5():
    metrics = top_k_metrics(5, prefix="x_")
    metrics.update(torch.eye(5)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 3]))
    figures = metrics.compute()
    assert figures["x_top1"].item() == pytest.approx(0.75) and figures["x_top5"].item() == pytest.approx(1.0)
    assert set(top_k_metrics(3, prefix="y_").keys()) == {"y_top1"}


def test_report_writes_the_result_file(tmp_path, capsys):
    cfg = OmegaConf.create({"ckpt": "run/last.ckpt", "paths": {"output_dir": str(tmp_path)}})
    result = report(cfg, "knn", torch.eye(3), torch.tensor([0, 1, 0]), num_classes=3, k=20)
    saved = json.loads((tmp_path / "knn.json").read_text())
    assert saved == result and saved["knn_top1"] == pytest.approx(2 / 3) and saved["k"] == 20 and saved["num_val"] == 3
    assert "knn top-1 0.6667 (3 images)" in capsys.readouterr().out


def test_loading_a_missing_or_foreign_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="does not exist; point it at a run's checkpoints/last.ckpt"):
        load_pretrained(str(tmp_path / "nope.ckpt"))
    stray = tmp_path / "stray.ckpt"
    torch.save({"state_dict": {}}, stray)
    with pytest.raises(UserError, match="no pretraining config found"):
        load_pretrained(str(stray))


def test_extract_features_shows_a_progress_bar_with_its_label(capsys):
    backbone = nn.Flatten()
    backbone.out_dim = 4
    loader = [(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]))] * 3
    extract_features(backbone, loader, lambda x: x.float(), torch.device("cpu"), progress="kNN bank")
    assert "kNN bank" in capsys.readouterr().err
