"""A LoRA adapter (peft's safetensors) merged into a llama-architecture GGUF, so llama.cpp runs it at base speed.

llama.cpp can also apply an adapter at run time, but that adds two small matrix products to every adapted
layer of every decode step; merged weights cost nothing. The merge:

- reads the base GGUF (`gguf.GGUFReader`), copies its metadata and every tensor the adapter does not touch
  byte for byte;
- for each adapted matrix, de-quantizes the base weight and adds `scale * B @ A` (`scale = lora_alpha / r`),
  stored as F32;
- llama.cpp's own quantizer then encodes the file in the weights the fast path runs (`quantize_gguf`).

The transformers names of the adapted modules map onto llama.cpp's tensor names below. llama.cpp's converter
stores the query and key projections with their rows interleaved for its rotary embedding, so their updates
get the same row order (`_rope_rows`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["adapter_deltas", "adapter_fingerprint", "merge_lora_into_gguf"]

# transformers module (within a decoder layer) -> llama.cpp tensor (within `blk.{i}`)
_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY = re.compile(r"layers\.(\d+)\.(self_attn\.\w+|mlp\.\w+)\.lora_([AB])\.weight$")


def adapter_deltas(adapter_dir: str | Path) -> dict[str, np.ndarray]:
    """GGUF tensor name -> the weight update `scale * B @ A` (out, in) in float32, from a peft adapter folder."""
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config_path, weights_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not (config_path.is_file() and weights_path.is_file()):
        raise InvalidRequestError(f"{adapter_dir} is not a LoRA adapter folder (adapter_config.json + safetensors)")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora"):
        raise InvalidRequestError(f"{adapter_dir}: only plain LoRA adapters can be merged")
    r = int(config["r"])
    scale = float(config["lora_alpha"]) / (r**0.5 if config.get("use_rslora") else r)
    parts: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, value in load_file(weights_path).items():
        match = _KEY.search(key)
        if match is None:
            raise InvalidRequestError(f"{adapter_dir}: no llama.cpp tensor for the adapter weight {key}")
        layer, module, which = match.groups()
        if module not in _GGUF_NAMES:
            raise InvalidRequestError(f"{adapter_dir}: no llama.cpp tensor for the module {module}")
        parts.setdefault((layer, module), {})[which] = value.astype(np.float32)
    deltas = {}
    for (layer, module), ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise InvalidRequestError(f"{adapter_dir}: layer {layer} {module} lacks its A or B matrix")
        deltas[f"blk.{layer}.{_GGUF_NAMES[module]}.weight"] = scale * (ab["B"] @ ab["A"])  # (out, in)
    return deltas


def adapter_fingerprint(adapter_dir: str | Path) -> str:
    """12 hex digits of the adapter's config and weights: the cache key of the models it was merged into."""
    adapter_dir = Path(adapter_dir)
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = adapter_dir / name
        if not path.is_file():
            raise InvalidRequestError(f"{adapter_dir} is not a LoRA adapter folder: {name} is missing")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _rope_rows(delta: np.ndarray, n_head: int) -> np.ndarray:
    """`delta`'s rows in llama.cpp's order for a rotary projection: within each head, the two halves of the
    head dimension interleaved (row i of half 0, row i of half 1, ...)."""
    out_dim = delta.shape[0]
    head = out_dim // n_head
    return delta.reshape(n_head, 2, head // 2, -1).swapaxes(1, 2).reshape(delta.shape)


def merge_lora_into_gguf(base: str | Path, adapter_dir: str | Path, target: str | Path) -> Path:
    """Write `target`: the GGUF `base` with the adapter's updates merged (adapted matrices in F32)."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(str(base))
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise InvalidRequestError(f"{base}: merging LoRA is supported for llama-architecture GGUFs, not {arch!r}")
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_head_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    deltas = adapter_deltas(adapter_dir)
    known = {t.name for t in reader.tensors}
    if missing := sorted(set(deltas) - known):
        raise InvalidRequestError(f"the adapter updates tensors {base} does not have: {missing[:3]}")

    target = Path(target)
    writer = GGUFWriter(str(target), arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes these itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)
    for tensor in reader.tensors:
        delta = deltas.get(tensor.name)
        if delta is None:
            writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
            continue
        weight = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)  # (out, in)
        if weight.shape != delta.shape:
            raise InvalidRequestError(
                f"{tensor.name}: the adapter's update is {delta.shape}, the weight {weight.shape}"
            )
        if tensor.name.endswith((".attn_q.weight", ".attn_k.weight")):
            heads = n_head if ".attn_q." in tensor.name else n_head_kv
            delta = _rope_rows(delta, heads)
        writer.add_tensor(tensor.name, weight + delta, raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
