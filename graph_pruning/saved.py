"""What the folder of a saved graph pruner holds: `GraphPruner.save` writes it, `GraphPruner.load` reads it, and
`check_pruner_dir` tells a caller (the CLI's `--pruner`) before anything loads whether a folder is one.

No torch here: checking a folder must stay cheap.

>>> check_pruner_dir(WEIGHTS_DIR / "math").name
'math'
>>> check_pruner_dir("/nope")
Traceback (most recent call last):
    ...
prunekit.graph_pruning.errors.PrunerNotFoundError: /nope holds no trained pruner (config.json + pruner.safetensors)
"""

from __future__ import annotations

from pathlib import Path

from prunekit.graph_pruning.errors import PrunerNotFoundError

__all__ = ["CONFIG_FILE", "TENSORS_FILE", "WEIGHTS_DIR", "check_pruner_dir"]

CONFIG_FILE = "config.json"  # `PrunerConfig` as JSON, with the training provenance in `extra`
TENSORS_FILE = "pruner.safetensors"  # the state dict, fp16
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the shipped pruners, one folder per domain


def check_pruner_dir(path: str | Path) -> Path:
    """`path` when it holds a saved pruner; `PrunerNotFoundError` naming the files it lacks otherwise."""
    path = Path(path)
    if all((path / name).is_file() for name in (CONFIG_FILE, TENSORS_FILE)):
        return path
    raise PrunerNotFoundError(f"{path} holds no trained pruner ({CONFIG_FILE} + {TENSORS_FILE})")
