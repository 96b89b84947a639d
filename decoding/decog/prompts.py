"""Task-only instruction prompts: what the app sends the LLM, with no word about the output format.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595) distils its HMM from LLM samples drawn under instruction prompts
("instruction-aware distillation") so the HMM knows what the LLM writes when it is asked to do a task, and keeps the
format out of the prompt: guidance adds it at decoding time. The same templates serve two places, so the HMM is
distilled on the distribution it later guides:

- distillation (`distill.py`): prompts built from TRAINING data only (MultiArith / SVAMP train, the SQuAD v1.1 train
  subset) plus general chat questions; `distillation_prompts` refuses test, dev and leaked files;
- evaluation (`eval/decoding.py`): the same templates filled with evaluation items (`prompt`, `hard_mask`, `decog`).

Loaders read the official on-disk formats of ../shared/data (never copied into the repo).

>>> math_messages("Tom has 3 apples and buys 2 more. How many apples does he have?")[0]["role"]
'user'
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.decoding.errors import InvalidRequestError, LeakageError
from prunekit.decoding.types import Message

__all__ = [
    "CHAT_QUESTIONS",
    "DEFAULT_MIX",
    "MathProblem",
    "SquadItem",
    "build_judge_items",
    "chat_messages",
    "distillation_prompts",
    "extract_messages",
    "is_evaluation_file",
    "judge_messages",
    "load_math_problems",
    "load_squad",
    "math_messages",
]

log = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)

# --------------------------------------------------------------------------- templates (task only, no format)
MATH_INSTRUCTION = "Solve this math word problem. Explain your reasoning step by step."
EXTRACT_INSTRUCTION = "Read the paragraph and answer the question with a short span copied from the paragraph."
JUDGE_INSTRUCTION = (
    "Read the paragraph and decide whether the candidate answer to the question is correct according to the paragraph."
)


def math_messages(question: str) -> list[Message]:
    """A math word problem, task only (no `The answer is` instruction)."""
    return [{"role": "user", "content": f"{MATH_INSTRUCTION}\n\n{question.strip()}"}]


def extract_messages(question: str, context: str) -> list[Message]:
    """Extractive QA over one paragraph, task only (no JSON instruction)."""
    content = f"{EXTRACT_INSTRUCTION}\n\nParagraph: {context.strip()}\n\nQuestion: {question.strip()}"
    return [{"role": "user", "content": content}]


def judge_messages(question: str, context: str, candidate: str) -> list[Message]:
    """LLM-as-judge of a candidate answer, task only (no verdict format)."""
    content = (
        f"{JUDGE_INSTRUCTION}\n\nParagraph: {context.strip()}\n\nQuestion: {question.strip()}\n\n"
        f"Candidate answer: {candidate.strip()}"
    )
    return [{"role": "user", "content": content}]


def chat_messages(question: str) -> list[Message]:
    return [{"role": "user", "content": question}]


# General assistant requests of the kinds a chat service receives (written for this project). A few ask for short
# structured replies (lists, yes/no, a JSON object, a number) so the HMM sees such tokens in natural use too.
CHAT_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "Explain photosynthesis in simple terms.",
    "Give me three tips for staying focused while studying.",
    "Write a short poem about the sea.",
    "What is the difference between a virus and a bacterium?",
    "How do I boil an egg?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "What are the main causes of climate change?",
    "Translate 'good morning' into Spanish and French.",
    "Why is the sky blue?",
    "List five fruits that are rich in vitamin C.",
    "How does a refrigerator keep food cold?",
    "What is a prime number? Give two examples.",
    "Write a polite email asking a colleague for a meeting next week.",
    "What is the tallest mountain in the world?",
    "Describe the water cycle.",
    "How many days are there in a leap year?",
    "What does a software engineer do?",
    "Give a short definition of machine learning.",
    "Is a tomato a fruit or a vegetable?",
    "What should I pack for a weekend camping trip?",
    "Explain what an API is to a beginner.",
    "Who painted the Mona Lisa?",
    "What is the boiling point of water in Fahrenheit?",
    "Suggest a name for a small coffee shop.",
    "How can I improve my sleep?",
    "What is the difference between weather and climate?",
    "Write one sentence that uses the word 'serendipity'.",
    "Convert 5 kilometers to miles.",
    "What are the three states of matter?",
    "Give me a simple recipe for pancakes.",
    "What is the largest planet in our solar system?",
    "Explain the rules of tic-tac-toe.",
    "Why do leaves change color in autumn?",
    "What is the main idea of the theory of evolution?",
    "How do vaccines work?",
    "Name three famous scientists and what they discovered.",
    "What is 15 percent of 80?",
    "Describe a cat in three words.",
    "What is the difference between 'affect' and 'effect'?",
    "Give me a JSON object with the name and age of a fictional person.",
    "Answer with yes or no: is the Earth round?",
    "Is the following statement true or false? Water freezes at 0 degrees Celsius.",
    "Rate the movie Titanic on a scale from 1 to 10 and explain briefly.",
    "Classify the sentiment of this review as positive or negative: 'The food was cold and the service slow.'",
    "Extract the city from this sentence: 'I flew from Boston to Denver last Tuesday.'",
    "What year did the first person walk on the Moon?",
    "How many sides does a hexagon have?",
    "Write a haiku about autumn.",
    "What is an adjective? Give an example sentence.",
    "Explain the difference between RAM and storage.",
    "What is the Pythagorean theorem?",
    "Give two reasons why exercise is good for health.",
    "What is the chemical symbol for gold?",
    "Recommend a book for someone who likes science fiction.",
    "How do you say 'thank you' in Japanese?",
    "What is inflation in economics?",
    "Write a one-line slogan for a recycling campaign.",
    "If a train travels 60 miles in one hour, how far does it go in three hours?",
    "Explain what a black hole is.",
    "What are the primary colors?",
    "Check this sentence for grammar mistakes: 'She don't like apples.'",
    "What is the population of the world, approximately?",
    "How does the internet work, in a few sentences?",
    "Give me a short motivational quote.",
    "What causes earthquakes?",
    "Who was the first president of the United States?",
    "Write a short dialogue between a customer and a waiter.",
    "What is the difference between a list and a tuple in Python?",
    "Is 97 a prime number?",
    "Describe the taste of chocolate to someone who has never tried it.",
    "What is the speed of light?",
    "Name the seven continents.",
    "Summarize the benefits of reading in three bullet points.",
    "What is democracy?",
    "How many minutes are in a day?",
    "What does DNA stand for?",
    "Explain why the Moon has phases.",
    "Give an example of a renewable energy source and explain it.",
    "Which is heavier, a kilogram of feathers or a kilogram of iron?",
)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class MathProblem:
    question: str
    answer: int  # integer answers only: the format's `<int>` and the metric agree


@dataclass(frozen=True)
class SquadItem:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InvalidRequestError(f"{path} does not exist: check the data path (see ../shared/data/README.md)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{path} is not valid JSON ({exc})") from exc


def _as_int(value: Any) -> int | None:
    try:
        f = float(str(value).replace(",", "").strip())
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def load_math_problems(path: str | Path) -> list[MathProblem]:
    """Math word problems with integer answers from AGP's files.

    Layouts: MultiArith (`[{"question", "final_ans"}]`), SVAMP (`[{"Body", "Question", "Answer"}]`) and GSM8K
    JSON lines (`{"question", "answer": "... #### n"}`). Items whose answer is not an integer are skipped.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise InvalidRequestError(f"{path} does not exist: check the data path (see ../shared/data/README.md)")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        rows = _read_json(path)
    if not isinstance(rows, list):
        raise InvalidRequestError(f"{path}: expected a list of math problems")
    out: list[MathProblem] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidRequestError(f"{path}: item {i} is not an object")
        if "final_ans" in row:  # MultiArith
            question, answer = str(row["question"]), _as_int(row["final_ans"])
        elif "Body" in row:  # SVAMP
            question, answer = f"{str(row['Body']).strip()} {str(row['Question']).strip()}", _as_int(row["Answer"])
        elif "answer" in row and "####" in str(row["answer"]):  # GSM8K
            question, answer = str(row["question"]), _as_int(str(row["answer"]).split("####")[-1])
        else:
            raise InvalidRequestError(f"{path}: item {i} is neither MultiArith, SVAMP nor GSM8K ({sorted(row)})")
        if answer is not None:
            out.append(MathProblem(" ".join(question.split()), answer))
    return out


def load_squad(path: str | Path) -> list[SquadItem]:
    """SQuAD v1.1 (`{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}`) flattened to one item per question."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, Mapping) or "data" not in data:
        raise InvalidRequestError(f"{path} is not a SQuAD v1.1 file (no 'data' key)")
    out: list[SquadItem] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))  # unique, in order
                if answers:
                    out.append(SquadItem(str(qa["id"]), qa["question"], para["context"], answers))
    return out


def build_judge_items(items: Sequence[SquadItem], *, seed: int = 0) -> list[dict[str, Any]]:
    """(question, paragraph, candidate, label) with the label known by construction, balanced and seeded.

    Items alternate (after a seeded shuffle) between the gold answer (`correct`) and the gold answer of another
    question (`incorrect`), preferably one on the same paragraph (a plausible distractor), never one that matches
    any of this question's gold answers.
    """
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    by_context: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_context.setdefault(item.context, []).append(i)
    out: list[dict[str, Any]] = []
    for rank, i in enumerate(order):
        item = items[i]
        base = {"id": item.id, "question": item.question, "context": item.context, "answers": list(item.answers)}
        if rank % 2 == 0:
            out.append({**base, "candidate": item.answers[0], "label": "correct"})
            continue
        golds = {_normalise(a) for a in item.answers}
        # Same paragraph first (plausible), then any other question.
        pool = [j for j in by_context[item.context] if j != i]
        distractor = _pick_distractor(items, pool, golds, rng) or _pick_distractor(
            items, rng.sample(range(len(items)), min(len(items), 50)), golds, rng
        )
        if distractor is None:  # only when every other answer equals this one's (tiny toy sets)
            out.append({**base, "candidate": item.answers[0], "label": "correct"})
        else:
            out.append({**base, "candidate": distractor, "label": "incorrect"})
    return out


def _pick_distractor(
    items: Sequence[SquadItem], pool: Sequence[int], golds: set[str], rng: random.Random
) -> str | None:
    candidates = [a for j in pool for a in items[j].answers[:1] if _normalise(a) not in golds and _normalise(a)]
    return rng.choice(candidates) if candidates else None


def _normalise(text: str) -> str:
    """SQuAD's answer normalisation (lower case, no punctuation or articles): decides whether two answers agree."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


# --------------------------------------------------------------------------- distillation prompt set
DEFAULT_MIX: dict[str, float] = {"math": 0.3, "extract": 0.25, "judge": 0.2, "chat": 0.25}
# Names of evaluation files: test and dev splits, AGP's stage-I records, GSM8K (its test items leak into stage I).
_LEAK_MARKERS = ("test", "dev", "stage1", "gsm8k")


def is_evaluation_file(path: str | Path) -> bool:
    """Whether the file's name marks it as evaluation data, which no training step may read."""
    name = Path(path).name.lower()
    return any(marker in name for marker in _LEAK_MARKERS)


def _check_training_file(path: Path) -> None:
    if is_evaluation_file(path):
        name = path.name.lower()
        raise LeakageError(
            f"{path} looks like an evaluation file ({name}): distil only from training splits "
            "(multiarith_train.json, svamp_train.json, squad_v1.1/train_subset-v1.1.json)"
        )


def distillation_prompts(
    n: int,
    *,
    math_paths: Sequence[str | Path] = (),
    squad_path: str | Path | None = None,
    mix: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[tuple[str, list[Message]]]:
    """`n` (kind, messages) pairs drawn from the task-only templates, the same list for the same arguments.

    Kinds: `math` (MultiArith / SVAMP train), `extract` and `judge` (SQuAD train subset), `chat` (CHAT_QUESTIONS).
    A kind without data is dropped from the mix. Evaluation files are refused (`LeakageError`).
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    problems: list[MathProblem] = []
    for p in math_paths:
        _check_training_file(Path(p))
        problems += load_math_problems(p)
    squad: list[SquadItem] = []
    if squad_path is not None:
        _check_training_file(Path(squad_path))
        squad = load_squad(squad_path)
    available = {"math": bool(problems), "extract": bool(squad), "judge": bool(squad), "chat": True}
    kinds = [k for k, w in mix.items() if w > 0 and available.get(k, False)]
    if not kinds:
        raise InvalidRequestError(f"no prompt kind has data: mix {mix}, math files {list(math_paths)}")
    weights = [mix[k] for k in kinds]
    rng = random.Random(seed)
    judge = build_judge_items(squad, seed=seed) if squad and "judge" in kinds else []
    out: list[tuple[str, list[Message]]] = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind == "math":
            out.append((kind, math_messages(rng.choice(problems).question)))
        elif kind == "extract":
            item = rng.choice(squad)
            out.append((kind, extract_messages(item.question, item.context)))
        elif kind == "judge":
            j = rng.choice(judge)
            out.append((kind, judge_messages(j["question"], j["context"], j["candidate"])))
        else:
            out.append((kind, chat_messages(rng.choice(CHAT_QUESTIONS))))
    return out
