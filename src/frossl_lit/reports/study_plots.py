"""The figures of a study report (:mod:`frossl_lit.reports.study_report`), as PNGs in the study directory.

``knn_curves.png``: per method, the kNN top-1 against epochs and against training seconds, mean and 95% band over
the final runs' seeds, with the thresholds drawn. ``efficiency.png`` (when the study names thresholds): the paper's
spider figure, each cost (seconds per step, peak memory, seconds and epochs to the first threshold, the paper's
hyperparameter count) over the costliest method's; a method some seed of which never reaches the threshold counts
1 on both axes to it. Every method keeps one colour and line style across both figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frossl_lit.runtime.fileio import atomic_write_with


def plot_study(data: dict[str, Any], report: dict[str, Any], directory: Path) -> list[str]:
    """Write the PNGs of a study into ``directory`` and return their names (``data``: :func:`.study_report.collect`;
    ``report``: :func:`.study_report.summarise`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from frossl_lit.reports.stats import mean_ci as ci

    names = []
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: a dozen methods never share one
    style = {name: {"color": colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
                    "linestyle": ("-", "--", ":", "-.")[i // 10 % 4]} for i, name in enumerate(data["methods"])}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, m in data["methods"].items():
        curves = [c for c in m["curves"].values() if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stats = [ci([c[i]["top1"] for c in curves]) for i in range(length)]
        mean = np.array([s["mean"] for s in stats])
        half = np.nan_to_num(np.array([s["half_width"] for s in stats]))
        epochs = [curves[0][i]["epochs"] for i in range(length)]
        seconds = [float(np.mean([c[i]["seconds"] for c in curves])) for i in range(length)]
        for axis, xs in ((axes[0], epochs), (axes[1], seconds)):
            axis.plot(xs, mean, marker=".", label=name, **style[name])
            axis.fill_between(xs, mean - half, mean + half, alpha=0.12, color=style[name]["color"])
    for t in data["thresholds"]:
        for axis in axes:
            axis.axhline(t, color="grey", linewidth=0.6, linestyle=":")
    axes[0].set_xlabel("epochs")
    axes[1].set_xlabel("training seconds (mean over seeds)")
    for axis in axes:
        axis.set_ylabel("kNN top-1 (reported split)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.suptitle("kNN top-1, mean and 95% band over seeds")
    figure.tight_layout()
    atomic_write_with(directory / "knn_curves.png", lambda buffer: figure.savefig(buffer, format="png", dpi=110))
    plt.close(figure)
    names.append("knn_curves.png")

    # the efficiency summary, as the paper's spider figure: each cost over the largest among the methods
    if data["thresholds"]:
        t = f"{data['thresholds'][0]:g}"
        axes_names = ["s / step", "peak memory", f"seconds to {t}", f"epochs to {t}", "hyperparameters (paper)"]
        rows = {}
        for name in report["results"]:
            r, tm = report["results"][name], report["timing"][name]
            every_seed = r["crossings"][t]["reached"] == r["crossings"][t]["of"]  # else: as never reached
            rows[name] = [tm["step_seconds"]["mean"], tm["peak_memory_gib"]["mean"],
                          tm["seconds_to"][t]["mean"] if every_seed else None,
                          r["crossings"][t]["epochs"]["mean"] if every_seed else None, r["hyperparameters"]["paper"]]
        values = np.array([[np.nan if v is None else float(v) for v in row] for row in rows.values()], dtype=float)
        largest = np.nanmax(np.where(np.isfinite(values), values, np.nan), axis=0) if len(values) else []
        angles = np.linspace(0, 2 * np.pi, len(axes_names), endpoint=False).tolist()
        figure = plt.figure(figsize=(8, 6))
        axis = figure.add_subplot(polar=True)
        for (name, _), row in zip(rows.items(), values):
            scaled = [(v / m if m and np.isfinite(v) else 1.0) for v, m in zip(row, largest)]  # never reached: worst
            axis.plot(angles + angles[:1], scaled + scaled[:1], label=name, **style[name])
            axis.fill(angles + angles[:1], scaled + scaled[:1], alpha=0.05, color=style[name]["color"])
        axis.set_xticks(angles)
        axis.set_xticklabels(axes_names, fontsize=8)
        axis.set_ylim(0, 1.05)
        figure.suptitle(f"Each cost over the costliest method's (smaller is better).\nA method some seed of which never "
                        f"reaches kNN {t} counts 1 on both axes to {t}.", fontsize=8)
        axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.15, 0.5))
        figure.tight_layout()
        atomic_write_with(directory / "efficiency.png", lambda buffer: figure.savefig(buffer, format="png", dpi=110))
        plt.close(figure)
        names.append("efficiency.png")
    return names
