"""What head gradient modification did over a run, from the figures MLA logs at every logging step:

- `hgm_grad_ratio_<m>`: ||G P|| / ||G||, the share of the head's gradient (or update) the projection lets through;
- `hgm_drift_<m>`: ||ΔW r_prev|| / ||W r_prev||, how far one step on modality m moved the head's output on the mean
  feature of the modality trained just before (what HGM exists to keep at 0);
- `p_min_eigenvalue`, `p_mean_eigenvalue`, `p_effective_rank`: P's spectrum; near-zero eigenvalues freeze the head
  along their directions.
"""

import statistics

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


SPECTRUM = ("p_min_eigenvalue", "p_mean_eigenvalue", "p_effective_rank")


def _series(log_history: list[dict], prefix: str) -> dict[str, tuple[list, list]]:
    """`{suffix: (epochs, values)}` of every logged key starting with `prefix`."""
    series = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith(prefix):
                epochs, values = series.setdefault(key[len(prefix):], ([], []))
                epochs.append(entry.get("epoch", len(epochs)))
                values.append(value)
    return series


def hgm_summary(log_history: list[dict]) -> dict[str, float]:
    """The run's mean gradient share and drift per modality, and P's spectrum at the end; {} when nothing was
    logged (HGM off and no drift measured, or another method)."""
    summary = {}
    for prefix, label in (("hgm_grad_ratio_", "mean share of the head gradient let through"),
                          ("hgm_drift_", "mean drift of the head on the previous modality")):
        for modality, (_, values) in _series(log_history, prefix).items():
            summary[f"{label}, {modality}"] = statistics.fmean(values)
    last = next((entry for entry in reversed(log_history) if SPECTRUM[0] in entry), None)
    if last is not None:
        summary.update({key.replace("p_", "P: ").replace("_", " "): last[key] for key in SPECTRUM})
    return summary


def plot_hgm(log_history: list[dict], path: str, title: str = "head gradient modification") -> str | None:
    """Write a PNG with three panels over epochs: the gradient share let through and the drift on the previous
    modality (one line per modality), and P's smallest and mean eigenvalue. None when the run logged none of it."""
    ratios, drifts = _series(log_history, "hgm_grad_ratio_"), _series(log_history, "hgm_drift_")
    spectrum = {key: series for key, series in _series(log_history, "p_").items() if f"p_{key}" in SPECTRUM[:2]}
    if not (ratios or drifts or spectrum):
        return None
    figure = Figure(figsize=(14, 3.8))
    axes = figure.subplots(1, 3)
    panels = [(axes[0], ratios, "||G P|| / ||G||", False), (axes[1], drifts, "drift of W r_prev", True),
              (axes[2], spectrum, "eigenvalue of P", True)]
    for axis, series, ylabel, log_scale in panels:
        for name, (epochs, values) in series.items():
            axis.plot(epochs, values, marker="o", markersize=2, label=name.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_scale and any(value > 0 for _, values in series.values() for value in values):
            axis.set_yscale("log")
        if series:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
