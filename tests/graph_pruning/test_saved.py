"""A saved pruner's folder: what `GraphPruner.save` writes is what `check_pruner_dir` accepts, nothing less."""

from __future__ import annotations

import pytest

from prunekit.graph_pruning.errors import PrunerNotFoundError
from prunekit.graph_pruning.model import GraphPruner
from prunekit.graph_pruning.pools import DOMAINS, get_pool
from prunekit.graph_pruning.saved import CONFIG_FILE, TENSORS_FILE, WEIGHTS_DIR, check_pruner_dir
from tests.graph_pruning.test_model import fake_embed


def test_a_saved_pruner_passes_the_check(tmp_path):
    saved = GraphPruner.from_pool(get_pool("math"), embed=fake_embed).save(tmp_path / "p")
    assert check_pruner_dir(saved) == saved and {p.name for p in saved.iterdir()} == {CONFIG_FILE, TENSORS_FILE}
    assert all(check_pruner_dir(WEIGHTS_DIR / d) == WEIGHTS_DIR / d for d in DOMAINS)


def test_a_folder_missing_a_file_is_refused_naming_both(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("{}")
    for folder in (tmp_path, tmp_path / "absent"):
        with pytest.raises(
            PrunerNotFoundError, match=f"holds no trained pruner \\({CONFIG_FILE} \\+ {TENSORS_FILE}\\)"
        ):
            check_pruner_dir(folder)
