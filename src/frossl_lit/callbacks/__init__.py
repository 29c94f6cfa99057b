from frossl_lit.callbacks.knn import KNNEvaluation, knn_predict
from frossl_lit.callbacks.online_probe import OnlineLinearProbe
from frossl_lit.callbacks.spectrum import SpectrumDiagnostics, effective_rank

__all__ = ["KNNEvaluation", "OnlineLinearProbe", "SpectrumDiagnostics", "effective_rank", "knn_predict"]
