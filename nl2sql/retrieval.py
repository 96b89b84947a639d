"""Demonstration retrieval: the training examples most like a question, each with its decomposition.

LearNAT (arXiv 2504.02327) prompts with decomposed demonstrations; like DAIL-SQL we pick them by
similarity rather than fixing them. Each training example (question, gold SQL) of Spider's
`train_spider_slim.json` is embedded twice with the shared MiniLM encoder:

- its *masked question*: the words that name the example's own tables and columns become `<mask>`,
  numbers `<num>` and quoted or capitalised values `<val>` (`mask_question`), because dev databases
  never occur in train, so what should match is the question's shape, not its domain;
- its *SQL skeleton*: the gold SQL with values, tables and columns masked (`sql_skeleton`).

`DemoIndex.retrieve(question, k, schema=..., draft_sql=...)` ranks by masked-question cosine and, when
a draft SQL is given, adds `skeleton_weight` times the skeleton cosine (DAIL-SQL's second signal).
Each returned `Demonstration` carries its steps from `decompose.decompose` (computed on demand).

The index is built once and cached on disk (`<cache_dir>/nl2sql-demos-<hash>.npz`, the hash covering
the training file's bytes, the encoder's folder and the masking version), so no call ever embeds the
training set again. Only a training split can be indexed: the dev split is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlglot import exp

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.decompose import Subtask, decompose
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.schema import Schema, load_spider_tables
from prunekit.nl2sql.sqlast import DIALECT, parse_sql

__all__ = [
    "DemoIndex",
    "Demonstration",
    "RetrievalError",
    "TrainExample",
    "load_train_examples",
    "mask_question",
    "sql_skeleton",
]

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]

MASK_VERSION = 4  # bump when masking or skeletons change: the cache key includes it
TRAIN_FILES = ("train_spider_slim.json", "train_spider.json")


class RetrievalError(InvalidRequestError):
    """The demonstration index cannot be built or queried as asked (say which file or argument to change)."""


# ---------------------------------------------------------------------------------------------
# Masking


def sql_skeleton(sql: str) -> str:
    """The SQL with values, tables, columns and aliases masked: what kind of query it is.

    >>> sql_skeleton("SELECT name FROM singer WHERE age > 20 ORDER BY age DESC LIMIT 3")
    'SELECT _ FROM _ WHERE _ > _ ORDER BY _ DESC LIMIT _'
    """
    try:
        tree = parse_sql(sql, spider_strings=True).copy()
    except SQLError:
        return _regex_skeleton(sql)

    def unalias(node: exp.Expression) -> exp.Expression:
        return node.this if isinstance(node, exp.Alias) else node

    def mask(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Literal):
            return exp.Var(this="_")
        if isinstance(node, exp.Column):
            return exp.Var(this="_") if not isinstance(node.this, exp.Star) else node
        if isinstance(node, exp.Table):
            return exp.Table(this=exp.Var(this="_"))
        if isinstance(node, exp.TableAlias):
            return None  # type: ignore[return-value]  # dropping the alias keeps the shape
        return node

    try:
        masked = tree.transform(unalias, copy=False).transform(mask, copy=False)
        return masked.sql(dialect=DIALECT)
    except Exception:  # sqlglot may refuse to print an unusual masked tree; regex then
        return _regex_skeleton(sql)


_KEYWORDS = frozenset(
    """select from where group by having order limit offset join on as and or not in like between is null
    distinct count sum avg min max union intersect except desc asc inner left outer cross exists case when then
    else end""".split()  # noqa: SIM905
)


def _regex_skeleton(sql: str) -> str:
    sql = re.sub(r"'[^']*'|\"[^\"]*\"", "_", sql)
    sql = re.sub(r"\b\d+(\.\d+)?\b", "_", sql)
    words = [w if w.lower() in _KEYWORDS or not re.match(r"[A-Za-z_]", w) else "_" for w in re.findall(r"\S+", sql)]
    return " ".join(words)


_WORD = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\"|\S")


def _forms(word: str) -> set[str]:
    """A word and its singular guesses ("enzymes" -> enzymes, enzyme, enzym; "cities" -> city)."""
    w = word.lower()
    forms = {w}
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        forms.add(w[:-1])
        if w.endswith("es"):
            forms.add(w[:-2])
        if w.endswith("ies"):
            forms.add(w[:-3] + "y")
    return forms


def _schema_words(schema: Schema | None) -> set[str]:
    if schema is None:
        return set()
    words: set[str] = set()
    for table in schema.tables:
        for name in (table.name, *(c.name for c in table.columns)):
            for part in re.findall(r"[A-Za-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name)):
                if len(part) > 2 and part.lower() not in {"id", "the", "and", "of"}:
                    words |= _forms(part)
    return words


_FUNCTION_WORDS = frozenset(
    """what which who whom whose how many much list show give find return all each every the a an of in on at to for
    by with from and or not is are was were be been have has had do does did that this those these than more less most
    least number count total average maximum minimum name names their its there any some also both only""".split()  # noqa: SIM905
)


def mask_question(question: str, schema: Schema | None = None) -> str:
    """The question with its domain words masked (see the module doc); keeps its shape words.

    >>> mask_question("How many singers are older than 30 in France?")
    'How many singers are older than <num> in <val> ?'
    """
    names = _schema_words(schema)
    out: list[str] = []
    for i, tok in enumerate(_WORD.findall(question)):
        if tok[0] in "'\"":
            out.append("<val>")
        elif tok[0].isdigit():
            out.append("<num>")
        elif tok.lower() in _FUNCTION_WORDS:
            out.append(tok)
        elif _forms(tok) & names:
            out.append("<mask>")
        elif i > 0 and tok[0].isupper() and tok.isalpha():
            out.append("<val>")  # a capitalised word inside a sentence is most often a value
        else:
            out.append(tok)
    text = " ".join(out)
    return re.sub(r"(<(mask|val)>)( \1)+", r"\1", text)  # "New York City" is one value


# ---------------------------------------------------------------------------------------------
# Examples and demonstrations


@dataclass(frozen=True)
class TrainExample:
    index: int  # position in the training file
    db_id: str
    question: str
    query: str


@dataclass(frozen=True)
class Demonstration:
    """A retrieved training example: its question, gold SQL, skeleton, score, and decomposition steps."""

    index: int
    db_id: str
    question: str
    sql: str
    skeleton: str
    score: float
    steps: tuple[Subtask, ...] = field(default=(), compare=False)


def load_train_examples(path: str | Path) -> list[TrainExample]:
    """The examples of a Spider *training* file (`train_spider_slim.json` or `train_spider.json`)."""
    path = Path(path)
    if path.name not in TRAIN_FILES:
        raise RetrievalError(
            f"demonstrations come from the training split only ({' or '.join(TRAIN_FILES)}), got {path.name}"
        )
    if not path.is_file():
        raise RetrievalError(f"no training file at {path}")
    entries = json.loads(path.read_text())
    return [TrainExample(i, e["db_id"], e["question"], e["query"]) for i, e in enumerate(entries)]


@functools.lru_cache(maxsize=4096)
def _steps(sql: str) -> tuple[Subtask, ...]:
    try:
        return tuple(decompose(sql, spider_strings=True))
    except (SQLError, ValueError, RecursionError) as err:
        log.debug("cannot decompose %r: %s", sql, err)
        return ()


def _embedder_id(embed: Embedder) -> str:
    owner = getattr(embed, "__self__", embed)
    return str(getattr(owner, "path", type(owner).__name__))


class DemoIndex:
    """Embedded training examples; `retrieve` returns the k most similar as `Demonstration`s."""

    def __init__(
        self,
        examples: Sequence[TrainExample],
        question_vecs: np.ndarray,
        skeleton_vecs: np.ndarray,
        skeletons: Sequence[str],
        embed: Embedder,
        *,
        schemas: dict[str, Schema] | None = None,
    ) -> None:
        if not (len(examples) == len(question_vecs) == len(skeleton_vecs) == len(skeletons)):
            raise RetrievalError("examples, vectors and skeletons must have the same length")
        self.examples = list(examples)
        self.question_vecs = np.asarray(question_vecs, dtype=np.float32)  # (N, D)
        self.skeleton_vecs = np.asarray(skeleton_vecs, dtype=np.float32)  # (N, D)
        self.skeletons = list(skeletons)
        self.embed = embed
        self.schemas = schemas or {}
        self._excluded = np.zeros(len(self.examples), dtype=bool)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.examples)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        examples: Sequence[TrainExample],
        embed: Embedder,
        *,
        schemas: dict[str, Schema] | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> DemoIndex:
        """Embed every example's masked question and SQL skeleton (slow: do it once, see `from_spider`)."""
        schemas = schemas or {}
        masked = [mask_question(e.question, schemas.get(e.db_id)) for e in examples]
        skeletons = [sql_skeleton(e.query) for e in examples]
        q_vecs = _embed_all(embed, masked, batch_size, progress, "embedding questions")
        s_vecs = _embed_all(embed, skeletons, batch_size, progress, "embedding skeletons")
        return cls(examples, q_vecs, s_vecs, skeletons, embed, schemas=schemas)

    @classmethod
    def from_spider(
        cls,
        data_dir: str | Path,
        embed: Embedder | None = None,
        *,
        cache_dir: str | Path | None = None,
        train_file: str = "train_spider_slim.json",
        progress: bool = True,
    ) -> DemoIndex:
        """The index of Spider's training split under `data_dir`, loaded from the disk cache when there.

        `embed` defaults to the shared MiniLM encoder; `cache_dir` to `decoding.backends.embedded.default_cache_dir()`.
        """
        data_dir = Path(data_dir)
        if train_file not in TRAIN_FILES:
            raise RetrievalError(f"train_file must be one of {TRAIN_FILES}, got {train_file!r}: never index dev")
        path = data_dir / train_file
        examples = load_train_examples(path)
        tables = data_dir / "tables.json"
        schemas = load_spider_tables(tables) if tables.is_file() else {}
        if embed is None:
            from prunekit.decoding.backends.embeddings import load_embedder

            embed = load_embedder()
        if cache_dir is None:
            from prunekit.decoding.backends.embedded import default_cache_dir

            cache_dir = default_cache_dir()
        digest = hashlib.sha256(path.read_bytes())
        digest.update(f"{_embedder_id(embed)}|{MASK_VERSION}".encode())
        cache = Path(cache_dir) / f"nl2sql-demos-{digest.hexdigest()[:16]}.npz"
        if cache.is_file():
            data = np.load(cache, allow_pickle=False)
            if len(data["question_vecs"]) == len(examples):
                log.info("demonstration index loaded from %s", cache)
                return cls(
                    examples,
                    data["question_vecs"],
                    data["skeleton_vecs"],
                    [str(s) for s in data["skeletons"]],
                    embed,
                    schemas=schemas,
                )
        log.warning(
            "building the demonstration index of %d training examples (once; cached in %s)", len(examples), cache
        )
        index = cls.build(examples, embed, schemas=schemas, progress=progress)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")  # np.savez keeps a name ending in .npz as it is
        np.savez(
            tmp,
            question_vecs=index.question_vecs,
            skeleton_vecs=index.skeleton_vecs,
            skeletons=np.array(index.skeletons, dtype=str),
        )
        tmp.replace(cache)
        return index

    # -- held-out tuning ----------------------------------------------------------------------

    def exclude(self, *, indices: Iterable[int] = (), db_ids: Iterable[str] = ()) -> None:
        """Never return these examples (by file index) or any example of these databases.

        Used to hold out a slice of train for tuning: the held-out questions and their databases must
        not serve as their own demonstrations.
        """
        dbs = set(db_ids)
        with self._lock:
            for i in indices:
                self._excluded[int(i)] = True
            if dbs:
                self._excluded |= np.array([e.db_id in dbs for e in self.examples], dtype=bool)

    def clear_exclusions(self) -> None:
        with self._lock:
            self._excluded[:] = False

    # -- querying -----------------------------------------------------------------------------

    def retrieve(
        self,
        question: str,
        k: int = 3,
        *,
        schema: Schema | None = None,
        draft_sql: str | None = None,
        skeleton_weight: float = 0.5,
        exclude_db: str | None = None,
    ) -> list[Demonstration]:
        """The `k` best training examples for `question`, best first.

        score = cos(masked question, example's masked question)
              + skeleton_weight * cos(skeleton(draft_sql), example's skeleton)   (when draft_sql is given)
        `schema` (the target database's) lets `mask_question` mask its table and column words.
        """
        if k < 0:
            raise RetrievalError(f"k must be >= 0, got {k}")
        if k == 0 or not self.examples:
            return []
        vectors = [mask_question(question, schema)]
        if draft_sql:
            vectors.append(sql_skeleton(draft_sql))
        emb = np.asarray(self.embed(vectors), dtype=np.float32)  # (1 or 2, D)
        scores = self.question_vecs @ emb[0]  # (N,)
        if draft_sql:
            scores = scores + skeleton_weight * (self.skeleton_vecs @ emb[1])
        with self._lock:
            blocked = self._excluded.copy()
        if exclude_db is not None:
            blocked |= np.array([e.db_id == exclude_db for e in self.examples], dtype=bool)
        scores = np.where(blocked, -np.inf, scores)
        order = np.argsort(-scores, kind="stable")
        out: list[Demonstration] = []
        seen: set[str] = set()
        for i in order:
            if not np.isfinite(scores[i]) or len(out) >= k:
                break
            ex = self.examples[int(i)]
            key = ex.query.lower()
            if key in seen:  # Spider repeats the same SQL with paraphrased questions: one is enough
                continue
            seen.add(key)
            out.append(
                Demonstration(
                    ex.index,
                    ex.db_id,
                    ex.question,
                    ex.query,
                    self.skeletons[int(i)],
                    float(scores[i]),
                    _steps(ex.query),
                )
            )
        return out


def _embed_all(embed: Embedder, texts: list[str], batch_size: int, progress: bool, label: str) -> np.ndarray:
    chunks = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=label, unit="batch")
    parts = [np.asarray(embed(texts[s : s + batch_size]), dtype=np.float32) for s in chunks]
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(parts, axis=0)
