"""Evaluation, online and offline alike: backbone features, the weighted kNN classifier, the linear head and
top-k accuracy (torchmetrics). The callbacks (``frossl_lit.callbacks.knn_monitor`` / ``online_probe``) and the offline
commands (``python -m frossl_lit.knn`` / ``linear``) are thin users of these functions.

- :mod:`.features`: ``extract_features`` — a loader through a backbone, in eval mode, with any input transform
  (``model_features``: the same inside a Lightning run, for the callbacks).
- :mod:`.knn`: ``knn_predict`` — class scores of queries against a labelled bank.
- :mod:`.linear_head`: ``linear_head`` (BN(affine=False) → Linear, or a plain Linear) and ``linear_optimizer``.
- :mod:`.metrics`: ``top_k_metrics`` — top-1 / top-5 accuracy that syncs over DDP ranks.
- :mod:`.offline`: loading a run's checkpoint and config, writing ``<name>.json``, the CLIs' error handling.
"""

from frossl_lit.evaluation.features import extract_features, model_features
from frossl_lit.evaluation.knn_classifier import knn_predict
from frossl_lit.evaluation.linear_head import linear_head, linear_optimizer
from frossl_lit.evaluation.metrics import top_k_metrics

__all__ = ["extract_features", "knn_predict", "linear_head", "linear_optimizer", "model_features", "top_k_metrics"]
