"""The report of a study (``python -m frossl_lit.compare``): ``report.md``, ``report.json`` and PNGs in its directory.

Per method, over the final runs' seeds (mean ± 95% Student-t interval, :mod:`frossl_lit.reports.stats`): the reported
kNN top-1 and online linear-probe top-1 at the end; for every threshold the epochs, training seconds and images
seen until the kNN top-1 first reaches it (kNN is measured after every epoch, so an epoch count is exact to the
epoch; a seed that never reaches it is counted, and the interval is over the seeds that did); the steady-state
seconds per training step and the peak memory (host RSS on a CPU, ``max_memory_allocated`` on a GPU); the number
of hyperparameters — the paper's count (OFSkean/FroSSL ``experiments/time_scaling/spider_time_scaling.py``,
``method_name_to_hyperparameters``, @e841c57) and the number this study searched. Then the paired differences
(same seed) between the reference method and each other one, and, across the tuning trials, how well each
label-free figure (RankMe, LiDAR, α-ReQ) ranks the settings as the validation kNN does (Kendall τ) and which
setting each would have picked.

``report.json`` keeps the figures that depend only on the runs' results (``results``: accuracies, epochs and
images to thresholds, trials, rank agreement) apart from those that depend on the machine's speed (``timing``),
so two studies of one setting can be checked for equality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from frossl_lit.reports.stats import first_crossing, format_ci, kendall_tau, mean_ci, paired_difference_ci
from frossl_lit.reports.study_plots import plot_study
from frossl_lit.runtime.fileio import atomic_write

# OFSkean/FroSSL@e841c57 experiments/time_scaling/spider_time_scaling.py, method_name_to_hyperparameters
PAPER_HYPERPARAMETERS = {"frossl": 1, "simsiam": 2, "barlow_twins": 1, "corinfomax": 5, "byol": 3, "mocov2": 4,
                         "simclr": 1, "mmcr": 0, "vicreg": 3}
# label-free figures, and how each ranks settings (higher is better; α-ReQ: closest to 1, Agrawal et al. 2022)
LABEL_FREE = {"rankme": lambda v: v, "lidar": lambda v: v, "alpha_req": lambda v: -abs(v - 1.0)}


def knn_curve(run_dir: Path) -> list[dict[str, float]]:
    """``[{epochs, seconds, top1}]`` from a run's metrics.csv: before training (0, 0) and after every epoch."""
    from frossl_lit.runtime.loggers import read_metrics  # Lightning's import stays out of the report's

    return [{"epochs": row["epoch"] + 1 if "epoch" in row else 0, "seconds": row.get("val/knn_train_seconds", 0.0),
             "top1": row["val/knn_top1"]} for row in read_metrics(run_dir) if "val/knn_top1" in row]


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def collect(study) -> dict[str, Any]:
    """Every figure the report shows, from the study's storage and run directories."""
    from optuna.trial import TrialState

    cfg = study.cfg
    thresholds = [float(t) for t in cfg.get("thresholds") or []]
    methods, trials_out = {}, {}
    for method in study.methods:
        trials = []
        for index, trial in enumerate(study.counted_trials(study.optuna_study(method))):
            summary = _read(study.trial_dir(method, index) / "summary.json") or {}
            trials.append({
                "trial": index, "params": dict(trial.params), "state": trial.state.name,
                "value": trial.value if trial.state == TrialState.COMPLETE else None,
                **{key: summary.get(key) for key in ("knn_top1", *LABEL_FREE)},
            })
        trials_out[method.name] = trials
        seeds, finals = [], []
        for seed in cfg.final.seeds:
            run_dir = study.final_dir(method, seed)
            summary = _read(run_dir / "summary.json")
            if summary is None:
                continue
            seeds.append(seed)
            finals.append({"seed": seed, "summary": summary, "curve": knn_curve(run_dir)})
        per_seed = {
            "knn_top1": [f["summary"].get("knn_top1") for f in finals],
            "probe_top1": [f["summary"].get("probe_top1") for f in finals],
        }
        crossings = {}
        for threshold in thresholds:
            epochs, seconds, images = [], [], []
            for f in finals:
                curve, per_epoch = f["curve"], f["summary"].get("images_per_epoch")
                first = first_crossing([p["epochs"] for p in curve], [p["top1"] for p in curve], threshold)
                epochs.append(first)
                seconds.append(first_crossing([p["seconds"] for p in curve], [p["top1"] for p in curve], threshold))
                images.append(first * per_epoch if first is not None and per_epoch else None)
            crossings[f"{threshold:g}"] = {"epochs": epochs, "images": images, "seconds": seconds,
                                           "reached": sum(e is not None for e in epochs), "of": len(finals)}
        methods[method.name] = {
            "overrides": list(method.overrides), "search": dict(method.search),
            "best_params": study.best_params(method) if any(t["value"] is not None for t in trials) else None,
            "seeds": seeds, "per_seed": per_seed, "crossings": crossings,
            "curves": {str(f["seed"]): f["curve"] for f in finals},
            "timing": {key: [f["summary"].get(key) for f in finals]
                       for key in ("step_seconds", "peak_memory_gib", "peak_memory_kind", "wall_seconds")},
            "hyperparameters": {"paper": PAPER_HYPERPARAMETERS.get(_base_method(method)), "searched": len(method.search)},
        }
    return {"study": cfg.name, "metric": cfg.metric, "thresholds": thresholds, "methods": methods, "trials": trials_out}


def _base_method(method) -> str:
    return next((o.split("=", 1)[1] for o in method.overrides if o.startswith("method=")), method.name)


def rank_agreement(trials: dict[str, list[dict]]) -> dict[str, Any]:
    """Kendall τ between each label-free figure and the validation kNN over the tuning trials (pooled over
    methods, and within each), and the trial each figure picks within each method against the kNN's pick."""
    out = {}
    for name, score in LABEL_FREE.items():
        pooled_x, pooled_y, per_method = [], [], {}
        for method, rows in trials.items():
            pairs = [(score(r[name]), r["knn_top1"], r["trial"]) for r in rows if _finite(r.get(name)) and _finite(r.get("knn_top1"))]
            pooled_x += [p[0] for p in pairs]
            pooled_y += [p[1] for p in pairs]
            tau = kendall_tau([p[0] for p in pairs], [p[1] for p in pairs])
            per_method[method] = {
                "tau": None if tau is None else tau[0],
                "picks": max(pairs, key=lambda p: (p[0], -p[2]))[2] if pairs else None,
                "knn_picks": max(pairs, key=lambda p: (p[1], -p[2]))[2] if pairs else None,
            }
        pooled = kendall_tau(pooled_x, pooled_y)
        out[name] = {"tau": None if pooled is None else pooled[0], "p_value": None if pooled is None else pooled[1],
                     "trials": len(pooled_x), "per_method": per_method}
    return out


def summarise(data: dict[str, Any], reference: str | None) -> dict[str, Any]:
    """``results`` (machine-independent) and ``timing`` (machine-dependent) sections of report.json."""
    methods = data["methods"]
    reference = reference or next(iter(methods))
    results, timing = {}, {}
    for name, m in methods.items():
        results[name] = {
            "seeds": m["seeds"], "best_params": m["best_params"],
            "knn_top1": mean_ci(m["per_seed"]["knn_top1"]), "probe_top1": mean_ci(m["per_seed"]["probe_top1"]),
            "per_seed": m["per_seed"], "hyperparameters": m["hyperparameters"],
            "crossings": {t: {"epochs": mean_ci(c["epochs"]), "images": mean_ci(c["images"]),
                              "reached": c["reached"], "of": c["of"], "per_seed_epochs": c["epochs"]}
                          for t, c in m["crossings"].items()},
        }
        timing[name] = {
            "step_seconds": mean_ci(m["timing"]["step_seconds"]), "peak_memory_gib": mean_ci(m["timing"]["peak_memory_gib"]),
            "peak_memory_kind": next((k for k in m["timing"]["peak_memory_kind"] if k), None),
            "wall_seconds": mean_ci(m["timing"]["wall_seconds"]),
            "seconds_to": {t: mean_ci(c["seconds"]) for t, c in m["crossings"].items()},
        }
    paired = {}
    if reference in methods:
        ref = methods[reference]
        for name, m in methods.items():
            if name == reference:
                continue
            common = [s for s in ref["seeds"] if s in m["seeds"]]
            paired[name] = {"seeds": common, **{key: paired_difference_ci(_by_seed(ref, key, common), _by_seed(m, key, common))
                                                for key in ("knn_top1", "probe_top1")}}
    return {"reference": reference, "results": results, "paired": paired,
            "rank_agreement": rank_agreement(data["trials"]), "trials": data["trials"], "timing": timing}


def _by_seed(method: dict[str, Any], key: str, seeds: list[int]) -> list[Any]:
    return [method["per_seed"][key][method["seeds"].index(s)] for s in seeds]


def _markdown(data: dict[str, Any], report: dict[str, Any], pngs: list[str]) -> str:
    results, timing, ref = report["results"], report["timing"], report["reference"]
    lines = [f"# Study `{data['study']}`", "",
             f"Tuning maximised `{data['metric']}` on a split carved from the training images; every figure below "
             f"is from the final runs on the reported split, mean ± 95% t-interval over seeds.", ""]
    head = "| method | seeds | kNN top-1 | linear (online probe) top-1 |"
    rule = "|---|---|---|---|"
    for t in data["thresholds"]:
        head += f" epochs to {t:g} | images to {t:g} | seconds to {t:g} |"
        rule += "---|---|---|"
    lines += [head + " s / step | peak memory (GiB) | hyperparameters (paper / searched) | best setting |",
              rule + "---|---|---|---|"]
    for name, r in results.items():
        row = f"| {name} | {len(r['seeds'])} | {format_ci(r['knn_top1'])} | {format_ci(r['probe_top1'])} |"
        for t in data["thresholds"]:
            c = r["crossings"][f"{t:g}"]
            note = "" if c["reached"] == c["of"] else f" ({c['reached']}/{c['of']} reached)"
            row += (f" {format_ci(c['epochs'], 1)}{note} | {format_ci(c['images'], 0)} |"
                    f" {format_ci(timing[name]['seconds_to'][f'{t:g}'], 1)} |")
        hp = r["hyperparameters"]
        best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (r["best_params"] or {}).items())
        row += (f" {format_ci(timing[name]['step_seconds'], 4)} | {format_ci(timing[name]['peak_memory_gib'], 2)} |"
                f" {'—' if hp['paper'] is None else hp['paper']} / {hp['searched']} | {best} |")
        lines.append(row)
    lines += ["", f"Paired differences, {ref} minus each method, same seeds (mean ± 95% interval; share of seeds where "
              f"{ref} is ahead):", "", "| method | seeds | Δ kNN top-1 | Δ linear top-1 |", "|---|---|---|---|"]
    for name, p in report["paired"].items():
        cells = [f"{format_ci(p[k])} ({p[k].get('fraction_a_greater', float('nan')):.0%})" if p[k]["n"] else "—"
                 for k in ("knn_top1", "probe_top1")]
        lines.append(f"| {name} | {len(p['seeds'])} | {cells[0]} | {cells[1]} |")
    lines += ["", "Label-free model selection over the tuning trials: Kendall τ with the validation kNN top-1 "
              "(pooled over methods) and, per method, the trial each figure picks against the kNN's pick:", "",
              "| figure | τ (pooled) | trials | " + " | ".join(data["trials"]) + " |",
              "|---|---|---|" + "---|" * len(data["trials"])]
    for name, a in report["rank_agreement"].items():
        picks = [f"{p['picks']} / {p['knn_picks']}" if p["picks"] is not None else "—" for p in a["per_method"].values()]
        tau = "—" if a["tau"] is None or not math.isfinite(a["tau"]) else f"{a['tau']:+.2f}"
        lines.append(f"| {name} | {tau} | {a['trials']} | " + " | ".join(picks) + " |")
    lines += ["", "Tuning trials (value = the tuning metric on the tuning split):", ""]
    for name, rows in data["trials"].items():
        lines.append(f"- **{name}**: " + "; ".join(
            f"#{r['trial']} " + ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in r["params"].items())
            + (f" → {r['value']:.4f}" if _finite(r["value"]) else f" → {r['state'].lower()}") for r in rows))
    lines += ["", *[f"![{png}]({png})" for png in pngs], ""]
    return "\n".join(lines)


def write_report(study) -> Path:
    """Write ``report.json``, ``report.md`` and the PNGs into the study directory; return report.md's path."""
    data = collect(study)
    report = summarise(data, study.cfg.get("reference"))
    directory = study.dir
    pngs = plot_study(data, report, directory)
    atomic_write(directory / "report.json", json.dumps({"study": data["study"], "metric": data["metric"],
                                                       "thresholds": data["thresholds"], **report,
                                                       "curves": {n: m["curves"] for n, m in data["methods"].items()}},
                                                      indent=1, default=str) + "\n")
    path = directory / "report.md"
    atomic_write(path, _markdown(data, report, pngs))
    return path
