"""Training logs as readable lines, `epoch 3.00 | loss 0.7118 | loss_audio 1.157 | ...`, instead of the dicts of
quoted strings transformers prints; with progress bars only where they can be drawn (a terminal)."""

from transformers import PrinterCallback, ProgressCallback


def format_logs(logs: dict) -> str:
    """One line for a Trainer log: the epoch first, then each value, numbers written as numbers."""
    logs = {key: value for key, value in logs.items() if key != "total_flos"}
    epoch = logs.pop("epoch", None)
    cells = [f"epoch {epoch:.2f}"] if isinstance(epoch, (int, float)) else []
    cells += [f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in logs.items()]
    return " | ".join(cells)


class ProgressLines(ProgressCallback):
    """The Trainer's progress bars, with each log written as one formatted line above them."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            (self.training_bar.write if self.training_bar is not None else print)(format_logs(logs))


class PrinterLines(PrinterCallback):
    """No progress bars (`disable_tqdm`, or output that is not a terminal): each log as one formatted line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(format_logs(logs), flush=True)
