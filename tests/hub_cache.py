"""A Hugging Face Hub cache in its standard layout, built from tiny saved models: Hub ids resolve without a network.

    models--<org>--<name>/snapshots/<commit>/<files>
    models--<org>--<name>/refs/<branch or tag>      (holds the commit hash)

Load with `cache_dir=<root>, local_files_only=True`, or in a fresh process with HF_HUB_CACHE=<root> and
HF_HUB_OFFLINE=1 (huggingface_hub reads both once, at import).
"""

import hashlib
import os


def publish(cache_root, repo_id: str, *objects, revision: str = "main") -> str:
    """Save each object (a model, config, processor or tokenizer: anything with `save_pretrained`) into a snapshot of
    `repo_id` and point `refs/<revision>` at it. Returns the snapshot folder."""
    repo = os.path.join(cache_root, "models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = os.path.join(repo, "snapshots", commit)
    for obj in objects:
        obj.save_pretrained(snapshot)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", revision), "w") as handle:
        handle.write(commit)
    return snapshot
