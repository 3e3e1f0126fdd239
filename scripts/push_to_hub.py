"""Push a saved MLA folder (model, processor, remote code, model card) to the Hugging Face Hub.

    huggingface-cli login          # once
    python scripts/push_to_hub.py --model_dir outputs/mla-av-digits --repo_id you/mla-av-digits [--private]

Only the files a Hub repo needs are uploaded (see `mla_hf.hub.hub_files`); training checkpoints, optimizer states
and the pickled training arguments are not. The card is rendered first if the folder has none.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mla_hf.hub import push_folder_to_hub


@dataclass
class PushArguments:
    model_dir: str = field(metadata={"help": "Folder written by scripts/train.py or MLATrainer.save_model."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. you/mla-av-digits."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    commit_message: str = field(default="Upload MLA model", metadata={"help": "Commit message."})
    dataset: str | None = field(default=None, metadata={"help": "Dataset name for a card rendered here."})


def main(args: PushArguments):
    commit = push_folder_to_hub(args.model_dir, args.repo_id, private=args.private,
                                commit_message=args.commit_message, dataset_name=args.dataset)
    print(f"Pushed {args.model_dir} to {commit.commit_url if hasattr(commit, 'commit_url') else args.repo_id}")
    return commit


if __name__ == "__main__":
    main(*HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=sys.argv[1:]))
