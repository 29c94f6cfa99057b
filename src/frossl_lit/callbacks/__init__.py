from frossl_lit.callbacks.divergence import DivergenceGuard
from frossl_lit.callbacks.knn_monitor import KNNEvaluation
from frossl_lit.callbacks.labelfree import LabelFreeEvaluation
from frossl_lit.callbacks.online_probe import OnlineLinearProbe
from frossl_lit.callbacks.plots import RunPlots, plot_run
from frossl_lit.callbacks.progress import LossProgressBar
from frossl_lit.callbacks.spectrum import SpectrumDiagnostics, effective_rank
from frossl_lit.callbacks.step_checkpoint import StepCheckpoint
from frossl_lit.callbacks.throughput import ThroughputMonitor
from frossl_lit.callbacks.time_budget import TimeBudget

__all__ = [
    "DivergenceGuard",
    "KNNEvaluation",
    "LabelFreeEvaluation",
    "LossProgressBar",
    "OnlineLinearProbe",
    "RunPlots",
    "SpectrumDiagnostics",
    "StepCheckpoint",
    "ThroughputMonitor",
    "TimeBudget",
    "effective_rank",
    "plot_run",
]
