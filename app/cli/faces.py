"""The methods' one-shot faces: `prunekit prune`, `ingest`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from prunekit.app.cli.common import (
    BackendOption,
    SqlAdapterOption,
    app,
    load_settings,
    load_sql_model,
    print_json_last,
    settings_for,
    stderr,
    stdout,
)


# --------------------------------------------------------------------------- context pruning
@app.command()
def prune(
    files: Annotated[
        list[Path] | None, typer.Argument(help="context files (one context each); omit to read stdin")
    ] = None,
    question: Annotated[str, typer.Option("--question", "-q", help="the question the contexts should answer")] = "",
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="0.1 conservative ... 0.5 aggressive")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Prune contexts to the sentences that answer the question (Provence). Without files, reads JSON from
    stdin: {"question": ..., "contexts": [...], "titles": [...]} (or a plain text context with --question)."""
    from prunekit.context_pruner import default_pruner

    titles: list[str | None] | None = None
    if files:
        contexts = []
        for path in files:
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file", param_hint="FILES")
            try:
                contexts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                raise typer.BadParameter(f"{path} is not UTF-8 text ({exc.reason})", param_hint="FILES") from exc
    else:
        raw = sys.stdin.read()
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            payload = {"contexts": [raw]}
        if not isinstance(payload, dict) or not isinstance(payload.get("contexts", []), list):
            raise typer.BadParameter('stdin JSON must be {"question": str, "contexts": [str, ...]}', param_hint="stdin")
        given = payload.get("question")
        if given is not None and not isinstance(given, str):
            raise typer.BadParameter(f"the stdin JSON's question must be a string, got {given!r}", param_hint="stdin")
        question = question or given or ""
        contexts, titles = payload.get("contexts", []), payload.get("titles")
    if not question.strip():
        raise typer.BadParameter("give the question with --question (or in the stdin JSON)", param_hint="--question")
    results = default_pruner().prune(question, contexts, titles=titles, threshold=threshold)
    if as_json:
        print_json_last({"question": question, "results": [r.to_dict() for r in results]})
        return
    for r in results:
        stderr.print(
            f"[bold]context {r.index}[/]: rerank {r.rerank_score:.3f}, tokens {r.tokens_before} -> {r.tokens_after}"
        )
        stdout.print(r.pruned_text, markup=False, highlight=False)


# --------------------------------------------------------------------------- RAG
@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (txt, md, html, pdf)")],
    collection: Annotated[str, typer.Option("--collection", help="collection to add the chunks to")] = "default",
    max_chars: Annotated[int, typer.Option(min=100, max=20000, help="chunk size in characters")] = 800,
    overlap: Annotated[int, typer.Option(min=0, max=5000, help="overlap between chunks")] = 150,
) -> None:
    """Read documents, chunk them and store their embeddings for the RAG model."""
    from prunekit.app.rag.documents import SUPPORTED_SUFFIXES, Chunk, chunk_text, document_source, read_document
    from prunekit.app.rag.store import VectorStore
    from prunekit.decoding.backends.embeddings import load_embedder

    files: list[tuple[Path, Path]] = []  # (file, the argument it came from)
    for path in paths:
        if path.is_dir():
            files += [(p, path) for p in sorted(path.rglob("*")) if p.suffix.lower() in SUPPORTED_SUFFIXES]
        else:
            files.append((path, path))
    if not files:
        raise typer.BadParameter("no supported documents found", param_hint="PATHS")
    chunks: list[Chunk] = []
    for path, given in files:
        title, text = read_document(path)
        pieces = chunk_text(text, max_chars=max_chars, overlap_chars=overlap)
        source = document_source(path.resolve(), given.resolve())
        chunks += [Chunk(text=t, source=source, index=i, title=title) for i, t in enumerate(pieces)]
    settings = load_settings()
    with stderr.status(f"embedding {len(chunks)} chunks from {len(files)} files"):
        store = VectorStore(load_embedder(), **settings.vector_store_location())
        try:
            store.add(collection, chunks)
        finally:
            store.close()
    stderr.print(f"ingested {len(chunks)} chunks from {len(files)} files into collection {collection!r}")


# --------------------------------------------------------------------------- NL2SQL
@app.command()
def sql(
    question: Annotated[str, typer.Argument(help="the question about the database")],
    db: Annotated[Path, typer.Option("--db", help="the SQLite database file (opened read-only)")],
    demos: Annotated[
        Path | None,
        typer.Option("--demos", help="a Spider folder (train_spider_slim.json) to retrieve demonstrations from"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result as JSON on the last line")] = False,
    adapter: SqlAdapterOption = None,
    backend: BackendOption = None,
) -> None:
    """Answer a question on a SQLite database with the LearNAT agent (read-only, with a timeout)."""
    from prunekit.nl2sql import answer_question, demonstration_index

    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    if not db.is_file():
        raise typer.BadParameter(f"{db} is not a file", param_hint="--db")
    if demos is not None and not (demos / "train_spider_slim.json").is_file():
        raise typer.BadParameter(f"{demos} has no train_spider_slim.json", param_hint="--demos")
    model = load_sql_model(settings_for(backend), adapter)
    cached = " (cached after the first time)" if demos is not None else ""
    with stderr.status(f"indexing the demonstrations{cached}"):
        index = demonstration_index(demos)
    with stderr.status("writing and running the SQL"):
        result = answer_question(question, db, model, index=index)
    if result.sql:
        stderr.print("[bold]SQL[/]")
        stdout.print(result.sql, markup=False, highlight=False)
    if result.error:
        stderr.print(f"[red]error[/]: {result.error}", highlight=False)
    for row in result.rows[:20]:
        stdout.print(" | ".join(str(v) for v in row), markup=False, highlight=False)
    if len(result.rows) > 20:
        stderr.print(f"... {len(result.rows) - 20} more rows")
    stdout.print(result.answer, markup=False, highlight=False)
    stderr.print(f"LLM calls {result.usage.calls}, tokens {result.usage.total_tokens}, {result.seconds:.1f} s")
    if as_json:
        print_json_last(result.to_dict())
