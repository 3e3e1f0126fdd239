"""Run scripts/train.py, killing this process with SIGKILL while checkpoint-<step> is being written: after its
weights, method state and optimizer, before trainer_state.json (the last file of a checkpoint).

    python kill_during_save.py STEP <scripts/train.py arguments>
"""

import os
import signal
import sys

from transformers.trainer_callback import TrainerState


def main():
    step, argv = sys.argv[1], sys.argv[2:]
    save_to_json = TrainerState.save_to_json

    def interrupted(self, json_path):
        if os.path.basename(os.path.dirname(json_path)) == f"checkpoint-{step}":
            with open(json_path, "w") as handle:
                handle.write('{"best_metric": nu')  # a half-written file, as a kill in mid-write leaves it
            os.kill(os.getpid(), signal.SIGKILL)
        save_to_json(self, json_path)

    TrainerState.save_to_json = interrupted
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    import train

    train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))


if __name__ == "__main__":
    main()
