"""Shared by the benchmarks: a callback that times each training step, and a dataset that repeats one batch."""

import time

import torch
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Seconds of each optimizer step of a Trainer run (`times`), synchronising the GPU when there is one."""

    def __init__(self):
        self.times = []

    @staticmethod
    def _sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, *_, **__):
        self._sync()
        self.started = time.perf_counter()

    def on_step_end(self, *_, **__):
        self._sync()
        self.times.append(time.perf_counter() - self.started)


class Repeated(torch.utils.data.Dataset):
    """The samples of one batch `{name: (batch, ...) tensor}`, over and over, `length` in all."""

    def __init__(self, batch: dict, length: int):
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return {key: value[index % len(value)] for key, value in self.batch.items()}
