"""The laziness plot: each modality's accuracy through the head, and the fused accuracy, over training."""

from matplotlib.figure import Figure  # not pyplot: no global backend or figure registry is touched
from matplotlib.ticker import MaxNLocator


def accuracy_curves(log_history: list[dict], modalities: list[str], prefix: str = "eval") -> dict[str, tuple[list, list]]:
    """`{"fused" | modality: (epochs, accuracies)}` from a Trainer's `state.log_history` evaluation entries."""
    keys = {"fused": f"{prefix}_accuracy", **{name: f"{prefix}_{name}_accuracy" for name in modalities}}
    curves = {curve: ([], []) for curve in keys}
    for entry in log_history:
        if keys["fused"] not in entry:
            continue
        for curve, key in keys.items():
            if key in entry:
                curves[curve][0].append(entry.get("epoch", len(curves[curve][0]) + 1))
                curves[curve][1].append(entry[key])
    if not curves["fused"][0]:
        raise ValueError(f"No '{keys['fused']}' in the log history: evaluate during training (eval_strategy).")
    return curves


def plot_laziness(runs: dict[str, list[dict]], modalities: list[str], path: str, kept_epochs: dict | None = None,
                  titles: dict | None = None, references: dict[str, float] | None = None) -> str:
    """Write a PNG with one panel per run (`{run name: log_history}`), e.g. MLA beside joint training. Under joint
    training the modality curves are the head's slices; a modality far below its unimodal accuracy is lazy.

    Args:
        kept_epochs: `{run: epoch}` of the model kept at the end, marked by a dashed line.
        titles: `{run: panel title}`; by default the run name.
        references: `{label: accuracy}` drawn as horizontal dotted lines in every panel (e.g. chance level).
    """
    figure = Figure(figsize=(5.5 * len(runs), 4.2))
    axes = figure.subplots(1, len(runs), sharey=True, squeeze=False)
    last_epoch = 1
    for axis, (name, history) in zip(axes[0], runs.items()):
        for curve, (epochs, accuracies) in accuracy_curves(history, modalities).items():
            style = {"linewidth": 2.5, "color": "black", "marker": "s"} if curve == "fused" else {"marker": "o"}
            axis.plot(epochs, accuracies, label=curve, markersize=4, **style)
            last_epoch = max(last_epoch, *epochs)
        for label, value in (references or {}).items():
            axis.axhline(value, linestyle=":", color="grey", linewidth=1)
            axis.annotate(label, (0, value), textcoords="offset points", xytext=(3, 3), fontsize=8, color="grey")
        if kept_epochs and kept_epochs.get(name) is not None:
            axis.axvline(kept_epochs[name], linestyle="--", color="tab:red", linewidth=1)
            axis.annotate("kept", (kept_epochs[name], 0.02), textcoords="offset points", xytext=(3, 0), fontsize=8,
                          color="tab:red")
        axis.set_title((titles or {}).get(name, name))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in axes[0]:
        axis.set_xlim(0, last_epoch + 0.2)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylim(0, 1.02)
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
