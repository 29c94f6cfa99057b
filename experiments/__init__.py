"""Benchmarks and experiments, run from the repository root as ``python -m experiments.<script>``; their shared
harness is :mod:`experiments.harness`, their recorded results are in experiments/results/."""
