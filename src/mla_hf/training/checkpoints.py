"""Which training checkpoints are complete: an interrupted save must never block or corrupt a resume.

The Trainer writes a checkpoint's files in a fixed order (weights and method state, optimizer, scheduler, RNG state)
and `trainer_state.json` last. A checkpoint is complete when that file parses and every safetensors file is whole
(its size matches its header); a SIGKILL during a save leaves one of them missing or cut short.
"""

import json
import os
import re
import struct

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from ..hub import weight_shards


logger = logging.get_logger(__name__)
METHOD_STATE_NAME = "training_method_state.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def is_checkpoint_folder(path: str) -> bool:
    return _CHECKPOINT.match(os.path.basename(os.path.normpath(path))) is not None


def safetensors_problem(path: str) -> str | None:
    """Why a safetensors file is unusable (missing, or cut short), or None."""
    try:
        with open(path, "rb") as handle:
            header_size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(header_size))
        data_size = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except FileNotFoundError:
        return f"{os.path.basename(path)} is missing"
    except (OSError, struct.error, ValueError, KeyError, TypeError):
        return f"{os.path.basename(path)} is unreadable"
    if os.path.getsize(path) != 8 + header_size + data_size:
        return f"{os.path.basename(path)} is cut short"
    return None


def checkpoint_problem(folder: str, method: str | None = None) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is a complete MLATrainer checkpoint (of `method`)."""
    if not os.path.isdir(folder):
        return "no such folder"
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"{TRAINER_STATE_NAME} is missing (the save was interrupted, or this is not a training checkpoint)"
    except (OSError, ValueError):
        return f"{TRAINER_STATE_NAME} is cut short"
    for name in [*weight_shards(folder), METHOD_STATE_NAME]:
        problem = safetensors_problem(os.path.join(folder, name))
        if problem:
            if name == METHOD_STATE_NAME and problem.endswith("missing"):
                return f"{problem}: it was not written by MLATrainer"
            return problem
    if method is not None:
        from safetensors import safe_open

        with safe_open(os.path.join(folder, METHOD_STATE_NAME), framework="pt") as handle:
            saved = (handle.metadata() or {}).get("method")
        if saved != method:
            return f"it was trained with method '{saved}', not '{method}'"
    return None


def newest_complete_checkpoint(output_dir: str, method: str | None = None) -> str:
    """The newest complete `checkpoint-N` in `output_dir`; incomplete ones are skipped with a warning naming them."""
    found = sorted((int(match.group(1)), name) for name in (os.listdir(output_dir) if os.path.isdir(output_dir) else [])
                   if (match := _CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name)))
    for _, name in reversed(found):
        folder = os.path.join(output_dir, name)
        problem = checkpoint_problem(folder, method)
        if problem is None:
            return folder
        logger.warning(f"Skipping {folder} when resuming: {problem}.")
    raise ValueError(f"No complete checkpoint to resume from in '{output_dir}'"
                     + (f" (skipped: {', '.join(name for _, name in found)})" if found else "") + ".")
