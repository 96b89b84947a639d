"""The SQL agent's LoRA adapter: the one prunekit ships (LearNAT-trained, `prunekit train nl2sql`), none, or a path.

The adapter is merged into the embedded model's weights when the model loads (`decoding.backends.lora_merge` for
llama.cpp, peft for transformers), so the tuned model decodes at the base model's speed. Its training provenance
(data, recipe, held-out databases, steps, wall time) is in `provenance.json` beside the weights.
"""

from __future__ import annotations

from pathlib import Path

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["ADAPTER_CHOICES", "SHIPPED_ADAPTER", "resolve_adapter"]

SHIPPED_ADAPTER = Path(__file__).parent / "weights" / "learnat-smollm2"
ADAPTER_CHOICES = "shipped | none | a peft adapter folder"


def resolve_adapter(choice: str | Path | None) -> Path | None:
    """`shipped` (also None) -> the shipped adapter's folder, `none` -> None (the base model), else the folder
    given, checked to hold a LoRA adapter."""
    if choice is None or str(choice) == "shipped":
        path = SHIPPED_ADAPTER
    elif str(choice) == "none":
        return None
    else:
        path = Path(choice).expanduser()
    if not ((path / "adapter_config.json").is_file() and (path / "adapter_model.safetensors").is_file()):
        raise InvalidRequestError(f"adapter must be {ADAPTER_CHOICES}; {path} holds no LoRA adapter")
    return path
