"""JSONSchemaBench's schema collection (Geng et al. 2025, "Generating Structured Outputs from Language Models:
Benchmark and Studies", arXiv 2501.10868), read where it lies: `schemas.tar.xz` in the data folder (the shared
copy's layout, `<Subset>/<file>.json` inside), or that layout already unpacked. Nothing is written to disk: the
archive is read member by member (~1 s for all 7,642 schemas).

    >>> SchemaItem("Github_easy", "o1.json", {"type": "object"}).id
    'Github_easy/o1.json'
"""

from __future__ import annotations

import json
import random
import tarfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["ARCHIVE", "DEFAULT_DATA", "SUBSETS", "SchemaItem", "load_schemas"]

DEFAULT_DATA = Path("../shared/data/jsonschemabench")
ARCHIVE = "schemas.tar.xz"
# The collection's subsets, in the order the paper's tables use.
SUBSETS = (
    "Github_trivial",
    "Github_easy",
    "Github_medium",
    "Github_hard",
    "Github_ultra",
    "Glaiveai2K",
    "Kubernetes",
    "Snowplow",
    "JsonSchemaStore",
    "WashingtonPost",
)


@dataclass(frozen=True)
class SchemaItem:
    """One schema of the collection."""

    subset: str
    name: str  # the file name, e.g. "o10008.json"
    schema: Any  # parsed JSON (not always an object: the collection holds a few odd ones)

    @property
    def id(self) -> str:
        return f"{self.subset}/{self.name}"


def load_schemas(
    data: str | Path,
    *,
    limit_per_subset: int | None = None,
    seed: int = 0,
    subsets: Sequence[str] | None = None,
) -> list[SchemaItem]:
    """The schemas under `data` (a folder holding `schemas.tar.xz`, or the unpacked `<Subset>/*.json`), a seeded
    sample of `limit_per_subset` per subset (None: all), subsets in `SUBSETS` order then any others by name.

    A file that is not JSON is left out (the collection's files all parse; a hand-made folder may not)."""
    root = Path(data)
    wanted = set(subsets) if subsets is not None else None
    files: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for subset, name, raw in _files(root):
        if wanted is None or subset in wanted:
            files[subset].append((name, raw))
    if not files:
        raise InvalidRequestError(
            f"no JSONSchemaBench schemas under {root}: expected {ARCHIVE} or <Subset>/<file>.json there"
        )
    rng = random.Random(seed)
    items: list[SchemaItem] = []
    for subset in sorted(files, key=lambda s: (SUBSETS.index(s) if s in SUBSETS else len(SUBSETS), s)):
        chosen = sorted(files[subset])
        rng.shuffle(chosen)
        for name, raw in chosen[:limit_per_subset] if limit_per_subset is not None else chosen:
            try:
                items.append(SchemaItem(subset, name, json.loads(raw)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return items


def _files(root: Path) -> Iterator[tuple[str, str, bytes]]:
    """(subset, file name, bytes) of every `<Subset>/<file>.json`, from the archive when there is one."""
    archive = root / ARCHIVE
    if archive.is_file():
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-1].endswith(".json"):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield parts[-2], parts[-1], handle.read()
        return
    if not root.is_dir():
        raise InvalidRequestError(f"{root} is not a folder: give the JSONSchemaBench folder (holding {ARCHIVE})")
    for path in sorted(root.glob("*/*.json")):
        yield path.parent.name, path.name, path.read_bytes()
