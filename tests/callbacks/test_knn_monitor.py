"""KNNEvaluation: figures at start and end of a real fit, equal to the classifier on the same features."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.callbacks import KNNEvaluation
from frossl_lit.evaluation import extract_features, knn_predict
from frossl_lit.runtime.errors import UserError
from tests.conftest import tiny_digits, tiny_fit


def test_knn_at_start_and_end_equals_the_classifier_on_the_final_features(tmp_path):
    knn = KNNEvaluation(k=5, temperature=0.1)
    datamodule = tiny_digits()
    trainer, module = tiny_fit(tmp_path, [knn], datamodule=datamodule)
    assert knn.initial_top1 is not None and knn.last_step == trainer.global_step == 6
    transform = datamodule.augment.eval_transform
    bank, bank_labels = extract_features(module.backbone, datamodule.bank_dataloader(), transform, torch.device("cpu"))
    queries, labels = extract_features(module.backbone, datamodule.val_dataloader(), transform, torch.device("cpu"))
    expected = (knn_predict(queries, bank, bank_labels, 10, k=5, temperature=0.1).argmax(1) == labels).float().mean()
    assert knn.last_top1 == pytest.approx(expected.item())
    summary = knn.summary()
    assert summary["knn_top1"] == knn.last_top1 and summary["knn_top1_init"] == knn.initial_top1
    assert summary["knn_bank_size"] == 1437 and summary["knn_eval_seconds"] > 0
    assert trainer.callback_metrics["val/knn_train_seconds"] > 0


def test_state_keeps_figures_and_the_training_clock():
    knn = KNNEvaluation()
    knn.load_state_dict({"initial_top1": 0.2, "last_top1": 0.5, "last_step": 7, "train_seconds": 12.5})
    state = knn.state_dict()
    assert state["initial_top1"] == 0.2 and state["last_top1"] == 0.5 and state["last_step"] == 7
    assert state["train_seconds"] == pytest.approx(12.5)


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 0}, r"^callbacks\.knn\.k=0 must be a positive number of neighbours; e\.g\. callbacks\.knn\.k=20$"),
    ({"temperature": 0.0}, r"^callbacks\.knn\.temperature=0\.0 must be > 0"),
    ({"every_n_epochs": 0}, r"^callbacks\.knn\.every_n_epochs=0 must be >= 1"),
    ({"bank_size": 0}, r"^callbacks\.knn\.bank_size=0 must be a positive number of images or null"),
])
def test_bad_settings_are_refused_naming_their_key(kwargs, message):
    with pytest.raises(UserError, match=message):
        KNNEvaluation(**kwargs)


def test_a_bank_size_takes_the_same_stratified_subset_and_the_summary_says_how_large(tmp_path):
    knn = KNNEvaluation(k=5, bank_size=200)
    datamodule = tiny_digits()
    tiny_fit(tmp_path, [knn], datamodule=datamodule, max_steps=2)
    assert knn.summary()["knn_bank_size"] == knn.bank_used == 200
    labels = datamodule.bank_dataloader(200).dataset.labels
    assert torch.bincount(labels, minlength=10).min() >= 19  # every class in proportion (~20 each)
    assert torch.equal(labels, datamodule.bank_dataloader(200).dataset.labels)
    with pytest.raises(UserError, match=r"^callbacks\.knn\.k=20 is more than callbacks\.knn\.bank_size=10"):
        KNNEvaluation(k=20, bank_size=10)
