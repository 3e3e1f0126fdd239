"""Shared by the benchmarks: each writes `<name>.json` (every measured value, the command, the machine) and
`<name>.md` (the table rendered from it), and can re-render the table from the JSON file alone. A `reading` added
to the JSON file (what the numbers mean) is rendered as a last section."""

import json
import os
from collections.abc import Callable


def write_results(saved: dict, render: Callable[[dict], str], output_dir: str, name: str) -> str:
    """Write `saved` and its rendering; returns the rendering."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{name}.json"), "w") as handle:
        json.dump(saved, handle, indent=2, default=str)
    text = _with_reading(render, saved)
    with open(os.path.join(output_dir, f"{name}.md"), "w") as handle:
        handle.write(text)
    return text


def render_again(render: Callable[[dict], str], output_dir: str, name: str) -> None:
    """Rewrite `<name>.md` from `<name>.json`, e.g. after a reading was added to the JSON file."""
    with open(os.path.join(output_dir, f"{name}.json")) as handle:
        saved = json.load(handle)
    with open(os.path.join(output_dir, f"{name}.md"), "w") as handle:
        handle.write(_with_reading(render, saved))


def _with_reading(render: Callable[[dict], str], saved: dict) -> str:
    text = render(saved)
    return text + f"\n## Reading\n\n{saved['reading']}\n" if saved.get("reading") else text
