"""Where each evaluation and training dataset lives under the data folder: one table per purpose, task -> files
(relative to the data folder, e.g. ../shared/data), and `dataset_files` to resolve them.

    >>> [p.as_posix() for p in dataset_files(DECODING_EVAL_DATA, "math", "/data")]
    ['/data/agp/multiarith_test.json']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["DECODING_EVAL_DATA", "GUIDANCE_TRAIN_DATA", "dataset_files", "decoding_exclude_file"]

# `prunekit eval decoding`: the EVALUATION files of each Deco-G task (never used to choose a guidance weight)
DECODING_EVAL_DATA: dict[str, tuple[str, ...]] = {
    "math": ("agp/multiarith_test.json",),
    "extract": ("qa/squad_v1.1/dev-v1.1.half_A.json",),
    "judge": ("qa/squad_v1.1/dev-v1.1.half_A.json",),
}

# `prunekit train guidance`: the TRAINING files each Deco-G task's guidance weight is chosen on
GUIDANCE_TRAIN_DATA: dict[str, tuple[str, ...]] = {
    "math": ("agp/multiarith_train.json", "agp/svamp_train.json"),
    "extract": ("qa/squad_v1.1/train_subset-v1.1.json",),
    "judge": ("qa/squad_v1.1/train_subset-v1.1.json",),
}


def dataset_files(table: Mapping[str, tuple[str, ...]], task: str, data_dir: str | Path) -> list[Path]:
    """The files `table` lists for `task`, under `data_dir` (whether they exist is the caller's check)."""
    return [Path(data_dir) / name for name in table[task]]


def decoding_exclude_file(task: str, data_dir: str | Path) -> Path | None:
    """The AGP stage-I records whose problems a `math` evaluation leaves out (training items of AGP), when they are
    in `data_dir`; None for the other tasks."""
    from prunekit.graph_pruning.data import AGP_STAGE1_FILES

    path = Path(data_dir) / AGP_STAGE1_FILES["math"]
    return path if task == "math" and path.is_file() else None
