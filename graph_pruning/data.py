"""Benchmark loaders for the agent evaluation, scoring, and the guard that keeps stage-I tasks out of evaluation.

Files live in ../shared/data (never copied into the repo), in the layouts AGP (arXiv 2506.02951) and SQuAD ship:

| benchmark  | split: file                                                        | domain  | answer  |
|------------|--------------------------------------------------------------------|---------|---------|
| gsm8k      | test: agp/gsm8k_test.jsonl (`#### n` answers)                      | math    | number  |
| multiarith | train/test: agp/multiarith_{split}.json (`final_ans`)              | math    | number  |
| svamp      | train/test: agp/svamp_{split}.json (`Body` + `Question`, `Answer`) | math    | number  |
| aqua       | test: agp/aqua_test.jsonl (options A-E, `correct`)                 | math    | choice  |
| humaneval  | test: agp/humaneval_py.jsonl (MultiPL-E; hidden `test`)            | code    | code    |
| squad      | dev: qa/squad_v1.1/dev-v1.1.half_A.json; train: train_subset       | general | span    |

Leakage: AGP's released stage-I tasks are GSM8K test problems (math), HumanEval problems (code) and MMLU items
(general). `heldout` drops every item whose task (or question alone) appears, after `normalize_task`, in any
stage-I record file, AGP's and ours; `check_no_leakage` refuses to collect stage-I records on evaluation items.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prunekit.graph_pruning.answers import (
    doctest_asserts,
    extract_choice,
    extract_number,
    numbers_equal,
    parse_number,
    token_f1,
)
from prunekit.graph_pruning.errors import LeakageError, UnknownBenchmarkError
from prunekit.graph_pruning.records import load_records
from prunekit.graph_pruning.sandbox import run_python
from prunekit.graph_pruning.task import AgentTask

__all__ = [
    "AGP_STAGE1_FILES",
    "BENCHMARKS",
    "BENCHMARK_DOMAIN",
    "BenchmarkItem",
    "agp_stage1_file",
    "check_no_leakage",
    "default_data_dir",
    "exclude_stage1",
    "gold_number",
    "heldout",
    "load_benchmark",
    "normalize_task",
    "score_answer",
    "stage1_files",
    "stage1_task_keys",
    "training_items",
]

logger = logging.getLogger(__name__)

BENCHMARK_DOMAIN: dict[str, str] = {
    "gsm8k": "math",
    "multiarith": "math",
    "svamp": "math",
    "aqua": "math",
    "humaneval": "code",
    "squad": "general",
}
BENCHMARKS: tuple[str, ...] = tuple(BENCHMARK_DOMAIN)
# AGP's released stage-I records, relative to the shared data folder: the one place that names them (the stage-II
# training data, and tasks no evaluation may contain)
AGP_STAGE1_FILES: dict[str, str] = {
    "math": "agp/stage1_math_reasoning.json",
    "general": "agp/stage1_general_reasoning.json",
    "code": "agp/stage1_coding.json",
}
_SPLITS: dict[str, dict[str, str]] = {
    "gsm8k": {"test": "agp/gsm8k_test.jsonl"},
    "multiarith": {"train": "agp/multiarith_train.json", "test": "agp/multiarith_test.json"},
    "svamp": {"train": "agp/svamp_train.json", "test": "agp/svamp_test.json"},
    "aqua": {"test": "agp/aqua_test.jsonl"},
    "humaneval": {"test": "agp/humaneval_py.jsonl"},
    "squad": {"dev": "qa/squad_v1.1/dev-v1.1.half_A.json", "train": "qa/squad_v1.1/train_subset-v1.1.json"},
}


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation (or training) item: the task the agents see and the gold they never see."""

    id: str
    benchmark: str
    task: AgentTask
    gold: tuple[str, ...]  # number(s) as text, a letter, gold spans, or the hidden test program


def default_data_dir() -> Path:
    """`$PRUNEKIT_SHARED_DATA`, else ../shared/data beside the repository."""
    env = os.environ.get("PRUNEKIT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def gold_number(answer: str) -> float | None:
    """GSM8K gold: the number after `####`."""
    m = re.search(r"####\s*(.+)$", answer.strip())
    return parse_number(m.group(1)) if m else extract_number(answer)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _items(name: str, raw_path: Path) -> list[BenchmarkItem]:
    if name == "gsm8k":
        rows = _read_jsonl(raw_path)
        return [
            BenchmarkItem(
                f"gsm8k-{i}", name, AgentTask(r["question"].strip(), "number"), (str(gold_number(r["answer"])),)
            )
            for i, r in enumerate(rows)
        ]
    if name == "multiarith":
        rows = json.loads(raw_path.read_text(encoding="utf-8"))
        return [
            BenchmarkItem(f"multiarith-{i}", name, AgentTask(r["question"].strip(), "number"), (str(r["final_ans"]),))
            for i, r in enumerate(rows)
        ]
    if name == "svamp":
        rows = json.loads(raw_path.read_text(encoding="utf-8"))
        out = []
        for r in rows:
            body = r["Body"].strip()
            question = f"{body}{'' if body.endswith('.') else '.'} {r['Question'].strip()}"
            out.append(BenchmarkItem(f"svamp-{r['ID']}", name, AgentTask(question, "number"), (str(r["Answer"]),)))
        return out
    if name == "aqua":
        rows = _read_jsonl(raw_path)
        out = []
        for i, r in enumerate(rows):
            letters = tuple(o.split(")", 1)[0].strip() for o in r["options"])
            prompt = r["question"].strip() + "\n" + "\n".join(f"Option {o.replace(')', ': ', 1)}" for o in r["options"])
            out.append(BenchmarkItem(f"aqua-{i}", name, AgentTask(prompt, "choice", choices=letters), (r["correct"],)))
        return out
    if name == "humaneval":
        rows = _read_jsonl(raw_path)
        return [
            BenchmarkItem(
                r["name"],
                name,
                AgentTask(
                    r["prompt"], "code", visible_tests=tuple(doctest_asserts(r["prompt"])), entry_point=r["entry_point"]
                ),
                (r["test"],),
            )
            for r in rows
        ]
    if name == "squad":
        data = json.loads(raw_path.read_text(encoding="utf-8"))["data"]
        out = []
        for article in data:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                    task = AgentTask(qa["question"].strip(), "span", context=para["context"])
                    out.append(BenchmarkItem(qa["id"], name, task, golds))
        return out
    raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of {list(BENCHMARKS)}")


def load_benchmark(
    name: str,
    split: str | None = None,
    *,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
) -> list[BenchmarkItem]:
    """Items of a benchmark split (default: its evaluation split). `path` overrides the file location."""
    if name not in _SPLITS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of {list(BENCHMARKS)}")
    splits = _SPLITS[name]
    split = split or ("dev" if name == "squad" else "test")
    if split not in splits and path is None:
        raise UnknownBenchmarkError(f"{name} has splits {list(splits)}, not {split!r}")
    file = Path(path) if path is not None else Path(data_dir or default_data_dir()) / splits[split]
    if not file.exists():
        raise UnknownBenchmarkError(f"{file} is missing: put the shared data beside the repo or pass its path")
    items = _items(name, file)
    return items[:limit] if limit is not None else items


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


def normalize_task(text: str) -> str:
    """Comparison key of a task: NFKC, straight quotes, lower case, single spaces.

    >>> normalize_task("  Janet\u2019s ducks\\n lay 16 EGGS ")
    "janet's ducks lay 16 eggs"
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.lower().split())


def agp_stage1_file(domain: str, data_dir: str | Path | None = None) -> Path:
    """AGP's released stage-I records of `domain` under `data_dir` (default: `default_data_dir()`).

    >>> agp_stage1_file("math", "/data").as_posix()
    '/data/agp/stage1_math_reasoning.json'
    """
    return Path(data_dir or default_data_dir()) / AGP_STAGE1_FILES[domain]


def stage1_files(data_dir: str | Path | None = None, ours: Iterable[str | Path] = ()) -> list[Path]:
    """Every stage-I record file whose tasks an evaluation must not contain: AGP's three released files under
    `data_dir` (default: `default_data_dir()`), then `ours`."""
    return [agp_stage1_file(domain, data_dir) for domain in AGP_STAGE1_FILES] + [Path(p) for p in ours]


def stage1_task_keys(paths: Iterable[str | Path]) -> set[str]:
    """Normalised tasks of every record in the given stage-I files (missing files are skipped with a warning)."""
    keys: set[str] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            logger.warning("stage-I file %s is missing; its tasks cannot be excluded", p)
            continue
        keys |= {normalize_task(r.task) for r in load_records(p)}
    return keys


def _item_keys(item: BenchmarkItem) -> set[str]:
    return {normalize_task(item.task.text), normalize_task(item.task.prompt)}


def exclude_stage1(items: Sequence[BenchmarkItem], stage1_keys: set[str]) -> list[BenchmarkItem]:
    """Items whose task and question both differ from every stage-I task."""
    kept = [it for it in items if not (_item_keys(it) & stage1_keys)]
    if len(kept) < len(items):
        logger.info("excluded %d of %d items that appear in stage-I records", len(items) - len(kept), len(items))
    return kept


def heldout(
    name: str,
    split: str | None = None,
    *,
    data_dir: str | Path | None = None,
    stage1_paths: Iterable[str | Path] | None = None,
    limit: int | None = None,
) -> list[BenchmarkItem]:
    """Evaluation items with every stage-I task removed: AGP's three released files plus `stage1_paths` (ours).

    `limit` applies after the exclusion.
    """
    root = Path(data_dir or default_data_dir())
    paths = stage1_files(root, stage1_paths or ())
    items = exclude_stage1(load_benchmark(name, split, data_dir=root), stage1_task_keys(paths))
    return items[:limit] if limit is not None else items


def check_no_leakage(train_tasks: Iterable[str], eval_items: Iterable[BenchmarkItem]) -> None:
    """Raise `LeakageError` when a training task is an evaluation item (after normalisation)."""
    forbidden: set[str] = set()
    for item in eval_items:
        forbidden |= _item_keys(item)
    leaked = [t for t in train_tasks if normalize_task(t) in forbidden]
    if leaked:
        raise LeakageError(f"{len(leaked)} training task(s) are evaluation items, e.g. {leaked[0][:80]!r}")


def score_answer(item: BenchmarkItem, answer: str, *, timeout: float = 10.0) -> float:
    """Score one answer: numeric / letter exact match, token F1 against the best gold span, pass@1 for code.

    Code is scored by running the hidden tests in the bubblewrap sandbox (`SandboxUnavailableError` without it).
    """
    fmt = item.task.answer_format
    if fmt == "number":
        return float(numbers_equal(extract_number(answer) if answer else None, parse_number(item.gold[0])))
    if fmt == "choice":
        letters = "".join(item.task.choices) or "ABCDE"
        return float(extract_choice(answer, letters) == item.gold[0]) if answer else 0.0
    if fmt == "span":
        return max((token_f1(answer, g) for g in item.gold), default=0.0)
    if not answer.strip():
        return 0.0
    return float(run_python(answer + "\n\n" + item.gold[0], timeout=timeout).ok)


def training_items(
    name: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
) -> list[BenchmarkItem]:
    """Stage-I items of a benchmark: its training split minus anything that also appears in its evaluation split
    (MultiArith's train and test files share 6 problems) or in AGP's stage-I files. `seed` shuffles first."""
    train_split = {"multiarith": "train", "svamp": "train", "squad": "train"}.get(name)
    if train_split is None:
        raise UnknownBenchmarkError(f"{name} has no training split here; stage-I benchmarks: multiarith, svamp, squad")
    items = load_benchmark(name, train_split, data_dir=data_dir)
    forbidden: set[str] = set()
    for item in load_benchmark(name, data_dir=data_dir):
        forbidden |= _item_keys(item)
    forbidden |= stage1_task_keys(stage1_files(data_dir))
    items = [it for it in items if not (_item_keys(it) & forbidden)]
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items[:limit] if limit is not None else items
