"""The laziness plot: each modality's accuracy through the head, and the fused accuracy, over training."""

from matplotlib.figure import Figure  # not pyplot: no global backend or figure registry is touched


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


def plot_laziness(runs: dict[str, list[dict]], modalities: list[str], path: str) -> str:
    """Write a PNG with one panel per run (`{run name: log_history}`), e.g. MLA beside joint training. Under joint
    training the modality curves are the head's slices; a modality far below its unimodal accuracy is lazy."""
    figure = Figure(figsize=(5 * len(runs), 4))
    axes = figure.subplots(1, len(runs), sharey=True, squeeze=False)
    for axis, (name, history) in zip(axes[0], runs.items()):
        for curve, (epochs, accuracies) in accuracy_curves(history, modalities).items():
            style = {"linewidth": 2.5, "color": "black"} if curve == "fused" else {"marker": "o", "markersize": 3}
            axis.plot(epochs, accuracies, label=curve, **style)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
