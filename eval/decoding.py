r"""`prunekit eval decoding --task math|extract|judge`: format compliance and task quality of Deco-G guidance.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595) keeps the output format out of the prompt and enforces it at
decoding time with an HMM distilled from the LLM. Every method below runs through one code path (same items, same
model, same token budget, same parsers), so the comparison is fair:

- `prompt`: the task-only prompt, no format; answers are parsed leniently ("parse what you can");
- `format_prompt`: the format described in the prompt, nothing enforced;
- `hard_mask`: task-only prompt + the format's token DFA as a hard mask (no lookahead; Outlines-like);
- `decog`: task-only prompt + Deco-G guidance (`DecoGProcessor`);
- `decog_pruned`: the same with HMM state pruning (`prune_mass`, default 0.9);
- `outlines` (not run by default): the same format as a hard mask by outlines-core, the engine behind Outlines,
  an external reference (`decoding/decog/outlines_ref.py`). It ignores the token budget, so an output cut by
  `max_tokens` can stop mid-format, and free text before a pivot is plain `[\s\S]*` (no look-arounds there).

Tasks (data from ../shared/data, by path):
- `math`: MultiArith test and/or GSM8K test problems, never an item of AGP's stage1_math_reasoning.json (all GSM8K
  test leaks); format `pivot:<free>The answer is <int><re:\.?>`: free reasoning, then `The answer is <integer>`
  with an optional closing period. Why the period: the LLM ends a sentence with "." before EOS; with EOS required
  right after the digits, decog (weights 0.5 and 1.0, training items) kept appending digits ("60000...") until the
  budget ran out, because the LLM prefers any digit to an EOS it never writes there. Metric `accuracy`;
- `extract`: SQuAD v1.1 dev half A, question + paragraph; format `json:{"answer": "string"}`; `f1`, `em`;
- `judge`: the same SQuAD items as (question, paragraph, candidate) with the gold answer or another question's answer
  as the candidate (label by construction, balanced, seeded); format `json:{"verdict": ["correct", "incorrect"]}`.

Metrics (`<method>.<metric>`): `compliance` (share of outputs matching the format exactly, checked with Python's
`re`, independent of the DFA), `accuracy` / `f1` / `em` (lenient parse of every output, the same parser for every
method), `strict_accuracy` / `strict_f1` / `strict_em` (non-compliant outputs score 0), `loglik_per_token` (log-
likelihood of the generated tokens, EOS included when the output ended, under the unconstrained LLM and the task-only
prompt: how natural the text is), `tokens_per_s` (completion tokens / wall time of the method's concurrent run),
`tokens` (mean completion tokens), `error_rate`; for Deco-G also `kept_states`, `kept_mass`, `ms_per_step` and
`choice_steps` (steps per output at a choice among fixed options, left to the LLM: `decoding/decog/guidance.py`).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.decoding import GenerationParams, InvalidRequestError, LocalBackend, model_name, require_local
from prunekit.decoding.decog import (
    DecoGProcessor,
    HardMaskProcessor,
    TokenVocabulary,
    compile_token_dfa,
    get_backward_tables,
    parse_format,
)
from prunekit.decoding.decog.distill import GenerationRecorder
from prunekit.decoding.decog.guidance_weights import GuidanceTrial, check_training_files
from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP, DEFAULT_HMM_DIR, stored_guidance_weight
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.outlines_ref import OutlinesMaskProcessor
from prunekit.decoding.decog.prompts import (
    build_judge_items,
    extract_messages,
    judge_messages,
    load_math_problems,
    load_squad,
    math_messages,
)
from prunekit.decoding.errors import LeakageError
from prunekit.decoding.types import Message
from prunekit.eval.harness import EvalResult, progress_bar, run_concurrently
from prunekit.eval.metrics.qa import exact_match, max_over_golds, token_f1

__all__ = [
    "DEFAULT_HMM_DIR",
    "DEFAULT_METHODS",
    "FORMATS",
    "METHODS",
    "TASKS",
    "DecodingItem",
    "LeakageError",
    "evaluate_decoding",
    "guidance_trial",
    "load_task_items",
    "model_eos_id",
    "model_vocabulary",
    "parse_answer",
]

log = logging.getLogger(__name__)

TASKS = ("math", "extract", "judge")
METHODS = ("prompt", "format_prompt", "hard_mask", "decog", "decog_pruned", "outlines")
DEFAULT_METHODS = METHODS[:5]  # `outlines` is the optional external reference
FORMATS = {
    "math": r"pivot:<free>The answer is <int><re:\.?>",
    "extract": 'json:{"answer": "string"}',
    "judge": 'json:{"verdict": ["correct", "incorrect"]}',
}
FORMAT_INSTRUCTIONS = {
    "math": "End your reply with the sentence 'The answer is ' followed by the final integer answer (for example: "
    "The answer is 12.), and write nothing after it.",
    "extract": 'Reply with only a JSON object of the form {"answer": "..."} holding the answer copied from the '
    "paragraph, and nothing else.",
    "judge": 'Reply with only a JSON object, either {"verdict": "correct"} or {"verdict": "incorrect"}, and nothing '
    "else.",
}
DEFAULT_MAX_NEW_TOKENS = {"math": 128, "extract": 48, "judge": 24}
STAGE1_MATH = "stage1_math_reasoning.json"


@dataclass(frozen=True)
class DecodingItem:
    """One evaluation example: the task-only conversation, its gold answer(s)."""

    id: str
    messages: list[Message]
    gold: Any  # int (math), tuple of answer strings (extract), "correct" | "incorrect" (judge)
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- data
def _norm_question(text: str) -> str:
    return " ".join(text.lower().split())


def _excluded_questions(path: Path) -> set[str]:
    rows = json.loads(path.read_text())
    return {_norm_question(str(r["task"])) for r in rows}


def load_task_items(
    task: str,
    data_paths: Sequence[str | Path],
    *,
    limit: int | None = None,
    seed: int = 0,
    exclude_path: str | Path | None = None,
) -> list[DecodingItem]:
    """Evaluation items of `task`, a seeded sample of `limit`.

    `math`: every item that appears in AGP's stage-I math records (`exclude_path`, default: the
    stage1_math_reasoning.json next to the data file) is removed; a GSM8K file without that list is refused.
    """
    if task not in TASKS:
        raise InvalidRequestError(f"task must be one of {TASKS}, got {task!r}")
    paths = [Path(p) for p in data_paths]
    if not paths:
        raise InvalidRequestError(f"give at least one data file for task {task!r}")
    rng = random.Random(seed)
    items: list[DecodingItem] = []
    if task == "math":
        for path in paths:
            exclude = Path(exclude_path) if exclude_path else path.parent / STAGE1_MATH
            banned: set[str] = set()
            if exclude.is_file():
                banned = _excluded_questions(exclude)
            elif "gsm8k" in path.name.lower():
                raise LeakageError(
                    f"{path}: GSM8K test items leak into AGP's stage-I records; pass exclude_path=<{STAGE1_MATH}>"
                )
            problems = load_math_problems(path)
            kept = [p for p in problems if _norm_question(p.question) not in banned]
            if len(kept) < len(problems):
                log.info("%s: excluded %d stage-I items", path.name, len(problems) - len(kept))
            items += [
                DecodingItem(f"{path.stem}-{i}", math_messages(p.question), p.answer, {"question": p.question})
                for i, p in enumerate(kept)
            ]
        rng.shuffle(items)
    else:
        squad = [it for path in paths for it in load_squad(path)]
        if task == "extract":
            rng.shuffle(squad)
            items = [
                DecodingItem(it.id, extract_messages(it.question, it.context), it.answers, {"question": it.question})
                for it in squad
            ]
        else:  # judge: already shuffled and alternating labels, so any prefix is balanced
            items = [
                DecodingItem(
                    f"{j['id']}-{j['label']}",
                    judge_messages(j["question"], j["context"], j["candidate"]),
                    j["label"],
                    {"question": j["question"], "candidate": j["candidate"]},
                )
                for j in build_judge_items(squad, seed=seed)
            ]
    return items[:limit] if limit is not None else items


# --------------------------------------------------------------------------- parsing
_INT = re.compile(r"-?\d[\d,]*")


def parse_answer(task: str, text: str) -> Any:
    """The answer in `text`, parsed leniently (None when there is none): the same parser for every method.

    math: the last integer; extract: the JSON `answer` if any, else the first line; judge: the JSON verdict if any,
    else the first verdict word (`incorrect`, `not correct`, `wrong`, `no` before `correct`, `yes`, `right`).
    """
    if task == "math":
        found = [m.group(0).replace(",", "") for m in _INT.finditer(text)]
        found = [f for f in found if f not in ("", "-")]
        return int(found[-1]) if found else None
    obj = _json_object(text)
    if task == "extract":
        if isinstance(obj, dict) and isinstance(obj.get("answer"), str):
            return obj["answer"]
        m = re.search(r'"answer"\s*:\s*"([^"]*)', text)
        if m:
            return m.group(1)
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[0] if lines else None
    if isinstance(obj, dict) and obj.get("verdict") in ("correct", "incorrect"):
        return obj["verdict"]
    low = text.lower()
    m = re.search(r"\b(incorrect|not correct|wrong|false|no|correct|yes|right|true)\b", low)
    if not m:
        return None
    return "correct" if m.group(1) in ("correct", "yes", "right", "true") else "incorrect"


def _json_object(text: str) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None


def _scores(task: str, pred: Any, gold: Any) -> dict[str, float]:
    if task == "math":
        return {"accuracy": float(pred is not None and pred == gold)}
    if task == "judge":
        return {"accuracy": float(pred == gold)}
    if pred is None:
        return {"f1": 0.0, "em": 0.0}
    return {"f1": max_over_golds(token_f1, pred, gold), "em": max_over_golds(exact_match, pred, gold)}


# --------------------------------------------------------------------------- model plumbing
def model_vocabulary(model: LocalBackend, tokenizer: Any = None) -> TokenVocabulary:
    """The vocabulary formats compile against: the backend's own (the one its guidance uses: a GGUF model brings its
    own tokenizer), or `tokenizer`'s when one is given."""
    return TokenVocabulary.from_tokenizer(tokenizer) if tokenizer is not None else model.vocabulary()


def model_eos_id(model: LocalBackend, vocab: TokenVocabulary) -> int:
    """The token that ends the model's replies (scored after an output that ended): the backend's, else the
    vocabulary's first EOS."""
    return int(model.eos_token_id) if model.eos_token_id is not None else vocab.eos_token_ids[0]


def _completion_ids(model: LocalBackend, recorded: list[int], text: str, ended: bool, eos: int) -> list[int]:
    """The generated token ids: what the recorder saw, plus the last token it could not see, plus EOS if it ended."""
    ids = list(recorded)
    if not ended:
        # The recorder sees each token one step later: the token picked at the last step is missing; re-encode the
        # tail of the text (one token, normally).
        seen = model.detokenize(ids)
        tail = text[len(seen) :] if text.startswith(seen) else ""
        if tail:
            ids += model.tokenize(tail, special=False)
    return [*ids, eos] if ended else ids


# --------------------------------------------------------------------------- the runner
@dataclass
class _Setup:
    """What every method of one evaluation shares: the format, the vocabulary, the budget, Deco-G's HMM and settings."""

    task: str
    spec: str
    fmt: Any
    dfa: Any
    vocab: TokenVocabulary
    hmm: HMM | None
    eos: int
    max_new_tokens: int
    weight: float
    prune_mass: float
    candidate_gap: float | None
    hmm_path: Path | None = None  # where `hmm` was loaded from (None: given as an object, or no Deco-G method)
    hmm_meta: dict[str, Any] = field(default_factory=dict)  # its config's metadata


def _processors(method: str, s: _Setup) -> tuple[Any, ...]:
    if method in ("prompt", "format_prompt"):
        return ()
    if method == "hard_mask":
        return (HardMaskProcessor(s.dfa, s.max_new_tokens),)
    if method == "outlines":
        return (OutlinesMaskProcessor(s.fmt, s.vocab),)
    assert s.hmm is not None
    prune = s.prune_mass if method == "decog_pruned" else None
    return (
        DecoGProcessor(
            s.hmm, s.dfa, s.max_new_tokens, prune_mass=prune, weight=s.weight, candidate_gap=s.candidate_gap
        ),
    )


def _messages(method: str, item: DecodingItem, task: str) -> list[Message]:
    if method != "format_prompt":
        return item.messages
    last = item.messages[-1]
    return [*item.messages[:-1], {"role": last["role"], "content": f"{last['content']}\n\n{FORMAT_INSTRUCTIONS[task]}"}]


def _load_hmm(hmm_dir: str | Path | None) -> tuple[HMM, dict[str, Any], Path]:
    path = Path(hmm_dir) if hmm_dir is not None else DEFAULT_HMM_DIR
    if not (path / "config.json").is_file():
        raise InvalidRequestError(f"no HMM in {path}: distil one (`prunekit train hmm`) or pass hmm_dir")
    meta = json.loads((path / "config.json").read_text()).get("metadata", {})
    return HMM.load(path), meta, path


def _check_task_and_methods(task: str, methods: Sequence[str]) -> None:
    if task not in TASKS:
        raise InvalidRequestError(f"task must be one of {TASKS}, got {task!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InvalidRequestError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")


def _setup(
    model: LocalBackend,
    task: str,
    guided: bool,
    *,
    tokenizer: Any,
    hmm_dir: str | Path | None,
    hmm: HMM | None,
    max_new_tokens: int | None,
    weight: float | None,
    prune_mass: float,
    candidate_gap: float | None,
) -> _Setup:
    """The format compiled against the model's vocabulary; for Deco-G methods (`guided`), the HMM and its weight."""
    budget = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task]
    vocab = model_vocabulary(model, tokenizer)
    spec = FORMATS[task]
    dfa = compile_token_dfa(spec, vocab)
    hmm_meta: dict[str, Any] = {}
    hmm_path: Path | None = None
    if guided and hmm is None:  # the given folder, else the model's own (`hmm_dir=` at load), else the shipped one
        hmm, hmm_meta, hmm_path = _load_hmm(hmm_dir if hmm_dir is not None else model.hmm_dir)
    if weight is None:
        weight = stored_guidance_weight(hmm_meta, task)
    if hmm is not None:
        get_backward_tables(hmm, dfa, budget - 1)  # once, before concurrent requests would each build it
    eos = model_eos_id(model, vocab)
    return _Setup(task, spec, parse_format(spec), dfa, vocab, hmm, eos, budget, weight, prune_mass, candidate_gap,
                  hmm_path, hmm_meta)  # fmt: skip


def evaluate_decoding(
    model: LocalBackend,
    task: str,
    data_paths: Sequence[str | Path] | str | Path,
    *,
    limit: int | None = 50,
    methods: Sequence[str] = DEFAULT_METHODS,
    hmm_dir: str | Path | None = None,
    hmm: HMM | None = None,
    concurrency: int = 8,
    max_new_tokens: int | None = None,
    weight: float | None = None,
    prune_mass: float = 0.9,
    candidate_gap: float | None = DEFAULT_CANDIDATE_GAP,
    seed: int = 0,
    exclude_path: str | Path | None = None,
    tokenizer: Any = None,
    items: Sequence[DecodingItem] | None = None,
) -> EvalResult:
    """Run every method on the same items of `task`; metrics `<method>.<metric>` (see the module docstring).

    `model`: a local backend (`decoding.LocalBackend`: llama.cpp or transformers; logits processors and
    `sequence_logprobs` are needed). `hmm_dir` (default: the model's `hmm_dir`, else the shipped SmolLM2 HMM) or
    `hmm`. `weight`: the HMM term's exponent (default: the weight chosen for `task` on training items and stored in
    the HMM's config, see `stored_guidance_weight`). `candidate_gap`: the service's default
    (`DEFAULT_CANDIDATE_GAP`); None scores every token exactly. `tokenizer`: compile the formats against its
    vocabulary instead of the backend's. `items` replaces loading from `data_paths` (tests).
    """
    local = require_local(model, "the Deco-G evaluation")
    _check_task_and_methods(task, methods)
    paths = [data_paths] if isinstance(data_paths, str | Path) else list(data_paths)
    if items is None:
        items = load_task_items(task, paths, limit=limit, seed=seed, exclude_path=exclude_path)
    if not items:
        raise InvalidRequestError(f"no {task} items to evaluate")
    guided = any(m.startswith("decog") for m in methods)
    setup = _setup(local, task, guided, tokenizer=tokenizer, hmm_dir=hmm_dir, hmm=hmm, max_new_tokens=max_new_tokens,
                   weight=weight, prune_mass=prune_mass, candidate_gap=candidate_gap)  # fmt: skip
    records: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    with progress_bar() as bar:
        for method in methods:
            recs, figures = _run_method(local, method, items, setup, concurrency, bar)
            records += recs
            metrics.update({f"{method}.{k}": v for k, v in figures.items()})
    config = {
        "task": task,
        "format": setup.spec,
        "data": [str(p) for p in paths],
        "limit": limit,
        "items": len(items),
        "model": model_name(local),
        "methods": list(methods),
        "max_new_tokens": setup.max_new_tokens,
        "concurrency": concurrency,
        "seed": seed,
        **_decog_config(setup, guided),
        "format_instruction": FORMAT_INSTRUCTIONS[task],
    }
    return EvalResult(task=f"decoding-{task}", config=config, metrics=metrics, items=records)


def _decog_config(s: _Setup, guided: bool) -> dict[str, Any]:
    """Deco-G's settings for the report, recorded only when a Deco-G method ran."""
    return {
        "weight": s.weight if guided else None,
        "prune_mass": s.prune_mass if guided else None,
        "candidate_gap": s.candidate_gap if guided else None,
        "hmm_dir": str(s.hmm_path) if s.hmm_path else None,
        "hmm_hidden_size": s.hmm.hidden_size if s.hmm is not None else None,
        "hmm_heldout_loglik_per_token": s.hmm_meta.get("heldout_loglik_per_token_fp16"),
    }


def _run_method(
    model: LocalBackend, method: str, items: Sequence[DecodingItem], s: _Setup, concurrency: int, bar: Any
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Records and figures of one method: generate every item, score the outputs' log-likelihood, parse, compare."""
    outs, wall, stats = _generate(model, method, items, s, concurrency, bar)
    loglik_of = _logliks(model, method, items, outs, s, concurrency, bar)
    records = [_record(method, item, out, s, loglik_of) for item, out in zip(items, outs, strict=True)]
    return records, _figures(s.task, records, wall, stats)


def _generate(
    model: LocalBackend, method: str, items: Sequence[DecodingItem], s: _Setup, concurrency: int, bar: Any
) -> tuple[list[Any], float, list[dict[str, float]]]:
    """Every item's output (or its exception), the wall time of the concurrent run, and Deco-G's processor stats."""
    stats: list[dict[str, float]] = []
    lock = threading.Lock()

    def generate(item: DecodingItem) -> dict[str, Any]:
        procs = _processors(method, s)  # fresh per request: processors are stateful
        rec = GenerationRecorder()
        params = GenerationParams(max_tokens=s.max_new_tokens, logits_processors=(*procs, rec))
        started = time.perf_counter()
        result = model.chat(_messages(method, item, s.task), params)
        seconds = time.perf_counter() - started
        ended = result.finish_reason == "stop"
        ids = _completion_ids(model, rec.generated, result.text, ended, s.eos)
        if procs and isinstance(procs[0], DecoGProcessor):
            with lock:
                stats.append(procs[0].stats())
        return {"text": result.text, "ids": ids, "ended": ended, "seconds": seconds,
                "completion_tokens": result.usage.completion_tokens}  # fmt: skip

    started = time.perf_counter()
    outs = run_concurrently(generate, items, concurrency=concurrency, description=f"{s.task} {method}", progress=bar)
    return outs, time.perf_counter() - started, stats


def _logliks(
    model: LocalBackend,
    method: str,
    items: Sequence[DecodingItem],
    outs: Sequence[Any],
    s: _Setup,
    concurrency: int,
    bar: Any,
) -> dict[int, Any]:
    """Log-likelihood of each output under the unconstrained model (or its exception), by `id` of the output."""

    def score(pair: tuple[DecodingItem, dict[str, Any]]) -> float:
        item, out = pair
        prompt_ids = model.encode_chat(item.messages)  # always the task-only prompt: the same reference for all
        return float(sum(model.sequence_logprobs(prompt_ids, out["ids"]))) if out["ids"] else 0.0

    ok = [(it, o) for it, o in zip(items, outs, strict=True) if not isinstance(o, BaseException)]
    logliks = run_concurrently(
        score, ok, concurrency=concurrency, description=f"{s.task} {method} loglik", progress=bar
    )
    return {id(o): ll for (_, o), ll in zip(ok, logliks, strict=True)}


def _record(method: str, item: DecodingItem, out: Any, s: _Setup, loglik_of: dict[int, Any]) -> dict[str, Any]:
    """One item's record: the output, its parse, compliance, scores (lenient and strict), log-likelihood, time."""
    rec: dict[str, Any] = {"id": item.id, "method": method, "gold": _jsonable(item.gold), **item.meta}
    if isinstance(out, BaseException):
        rec.update({"error": str(out), "compliant": False, **{k: 0.0 for k in _scores(s.task, None, item.gold)}})
        return rec
    pred = parse_answer(s.task, out["text"])
    compliant = s.fmt.matches(out["text"])
    scores = _scores(s.task, pred, item.gold)
    ll = loglik_of.get(id(out))
    rec.update(
        {
            "output": out["text"],
            "prediction": pred,
            "compliant": compliant,
            **scores,
            **{f"strict_{k}": v if compliant else 0.0 for k, v in scores.items()},
            "scored_tokens": len(out["ids"]),  # what `loglik` covers: the output's tokens, EOS included
            "loglik": None if isinstance(ll, BaseException) else ll,
            "seconds": out["seconds"],
            "completion_tokens": out["completion_tokens"],
        }
    )
    return rec


def _figures(task: str, records: list[dict[str, Any]], wall: float, stats: list[dict[str, float]]) -> dict[str, float]:
    n = max(len(records), 1)
    ok = [r for r in records if "error" not in r]
    keys = ["accuracy"] if task in ("math", "judge") else ["f1", "em"]
    out = {"compliance": sum(bool(r["compliant"]) for r in records) / n}
    for k in keys:
        out[k] = sum(float(r.get(k, 0.0)) for r in records) / n
        out[f"strict_{k}"] = sum(float(r.get(f"strict_{k}", 0.0)) for r in records) / n
    scored = [r for r in ok if r.get("loglik") is not None and r["scored_tokens"] > 0]
    total_tokens = sum(r["scored_tokens"] for r in scored)
    out["loglik_per_token"] = sum(r["loglik"] for r in scored) / total_tokens if total_tokens else float("nan")
    completion = sum(r["completion_tokens"] for r in ok)
    out["tokens_per_s"] = completion / wall if wall > 0 else float("nan")
    out["tokens"] = completion / max(len(ok), 1)  # mean completion tokens (the usage's count: no EOS)
    out["error_rate"] = (len(records) - len(ok)) / n
    if stats:
        for k in ("kept_states", "kept_mass", "ms_per_step", "choice_steps"):
            out[k] = sum(st[k] for st in stats) / len(stats)
    return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- guidance weight trials (training items)
def guidance_trial(
    model: LocalBackend,
    task: str,
    train_paths: Sequence[str | Path],
    *,
    limit: int = 20,
    method: str = "decog_pruned",
    seed: int = 0,
    **kwargs: Any,
) -> GuidanceTrial:
    """The trial `decoding.decog.guidance_weights.choose_guidance_weight` runs at each candidate weight: `method` on
    the same `limit` TRAINING items of `task`, its metrics without the method prefix. `kwargs` go to
    `evaluate_decoding` (e.g. `hmm_dir`, `concurrency`).

    Evaluation files (test, dev, AGP's stage I, GSM8K) raise `LeakageError` before anything is read.
    """
    check_training_files(train_paths)
    items = load_task_items(task, train_paths, limit=limit, seed=seed)

    def trial(weight: float) -> dict[str, float]:
        res = evaluate_decoding(model, task, train_paths, items=items, methods=(method,), weight=weight, **kwargs)
        return {k.split(".", 1)[1]: v for k, v in res.metrics.items()}

    return trial
