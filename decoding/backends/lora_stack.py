"""Two LoRA adapters trained one after the other, written as one adapter that applies both.

A second stage of training (LearNAT's margin-aware DPO, `nl2sql.dpo`) adds a fresh LoRA on top of the model
the first stage produced. Its update adds to the first: W + s1·B1·A1 + s2·B2·A2. That sum is itself one LoRA of
rank r1 + r2, with A the rows of A1 then A2, B the columns of s1·B1 then s2·B2, and lora_alpha = r1 + r2 (a
scale of 1). A module only one stage adapted gets zero rows from the other. The stacked adapter then loads,
merges and converts like any other (peft, `lora_merge`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["stack_adapters"]

_WEIGHTS, _CONFIG = "adapter_model.safetensors", "adapter_config.json"


def _read(adapter_dir: Path) -> tuple[dict, dict[str, torch.Tensor], float]:
    from safetensors.torch import load_file

    if not ((adapter_dir / _CONFIG).is_file() and (adapter_dir / _WEIGHTS).is_file()):
        raise InvalidRequestError(f"{adapter_dir} is not a LoRA adapter folder ({_CONFIG} + {_WEIGHTS})")
    config = json.loads((adapter_dir / _CONFIG).read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("fan_in_fan_out"):
        raise InvalidRequestError(f"{adapter_dir}: only plain LoRA adapters stack")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise InvalidRequestError(f"{adapter_dir}: adapters with per-module ranks do not stack")
    r = int(config["r"])
    scale = float(config["lora_alpha"]) / (r**0.5 if config.get("use_rslora") else r)
    return config, {k: v.float() for k, v in load_file(adapter_dir / _WEIGHTS).items()}, scale


def _modules(weights: dict[str, torch.Tensor]) -> set[str]:
    return {k.removesuffix(".lora_A.weight") for k in weights if k.endswith(".lora_A.weight")}


def stack_adapters(
    first: str | Path, second: str | Path, out_dir: str | Path, *, dtype: torch.dtype = torch.float16
) -> Path:
    """Write to `out_dir` one adapter equal to `first` plus `second` (see the module doc); returns `out_dir`."""
    from safetensors.torch import save_file

    config1, w1, s1 = _read(Path(first))
    config2, w2, s2 = _read(Path(second))
    r1, r2 = int(config1["r"]), int(config2["r"])
    stacked: dict[str, torch.Tensor] = {}
    for module in sorted(_modules(w1) | _modules(w2)):
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        shape_from = w1 if a_key in w1 else w2
        d_in, d_out = shape_from[a_key].shape[1], shape_from[b_key].shape[0]
        a1 = w1.get(a_key, torch.zeros(r1, d_in))  # (r1, in)
        b1 = w1.get(b_key, torch.zeros(d_out, r1))  # (out, r1)
        a2 = w2.get(a_key, torch.zeros(r2, d_in))
        b2 = w2.get(b_key, torch.zeros(d_out, r2))
        if a1.shape[1] != a2.shape[1] or b1.shape[0] != b2.shape[0]:
            raise InvalidRequestError(f"{module}: the two adapters were trained on different shapes")
        stacked[a_key] = torch.cat([a1, a2], dim=0).to(dtype).contiguous()  # (r1 + r2, in)
        stacked[b_key] = torch.cat([s1 * b1, s2 * b2], dim=1).to(dtype).contiguous()  # (out, r1 + r2)
    targets = sorted(set(config1.get("target_modules") or ()) | set(config2.get("target_modules") or ()))
    config = {**config1, "r": r1 + r2, "lora_alpha": r1 + r2, "use_rslora": False, "target_modules": targets}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(stacked, out / _WEIGHTS)
    (out / _CONFIG).write_text(json.dumps(config, indent=2))
    return out
