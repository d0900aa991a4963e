"""Load a task's JSONL files named relative to this folder (lm-eval's `custom_dataset` hook).

`dataset_kwargs.data_files` in a task YAML is resolved by `datasets` against the
current directory; these tasks must work from anywhere, so their YAMLs name
files relative to this folder and this anchors them before the plain `json` load.
"""
from pathlib import Path

HERE = Path(__file__).parent


def load(data_files: dict, task_dir: str, **_unused):
    import datasets

    files = {split: str(HERE / task_dir / name) for split, name in data_files.items()}
    return datasets.load_dataset("json", data_files=files)
