"""Which LoRA adapter the SQL agent's model runs: shipped, none, or a folder (checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.adapter import SHIPPED_ADAPTER, resolve_adapter


def test_shipped_is_the_default_and_holds_an_adapter_with_its_provenance() -> None:
    assert resolve_adapter(None) == resolve_adapter("shipped") == SHIPPED_ADAPTER
    provenance = (SHIPPED_ADAPTER / "provenance.json").read_text()
    assert "heldout_databases" in provenance and "recipe" in provenance


def test_none_is_the_base_model() -> None:
    assert resolve_adapter("none") is None


def test_a_folder_without_an_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="holds no LoRA adapter"):
        resolve_adapter(tmp_path)
    with pytest.raises(InvalidRequestError, match="holds no LoRA adapter"):
        resolve_adapter("/nonexistent/adapter")
