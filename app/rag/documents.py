"""Read txt, md, html and pdf files into text, and cut text into overlapping chunks on sentence bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["SUPPORTED_SUFFIXES", "Chunk", "chunk_text", "document_source", "public_source", "read_document"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str  # the document's name as ingested (`document_source`), or the title of a passage
    index: int  # position of the chunk in its source
    title: str  # the document title (file stem, or the HTML <title>)


def document_source(path: Path, given: Path) -> str:
    """The name a document is cited by: its path under the folder the ingest was given (that folder's name first),
    or its file name when the file itself was given. Never the server's absolute path: citations reach clients.

    >>> document_source(Path("/srv/docs/guides/setup.md"), Path("/srv/docs"))
    'docs/guides/setup.md'
    >>> document_source(Path("/srv/docs/faq.txt"), Path("/srv/docs/faq.txt"))
    'faq.txt'
    """
    if path == given or not path.is_relative_to(given):
        return path.name
    return (Path(given.name) / path.relative_to(given)).as_posix()


def public_source(source: str) -> str:
    """A stored source as clients may see it: collections ingested before `document_source` hold absolute paths,
    of which only the file name is shown."""
    return Path(source).name if source.startswith("/") else source


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML page: script/style dropped, block tags become line breaks."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)


def read_document(path: Path) -> tuple[str, str]:
    """(title, text) of a document; a specific error for missing, unsupported or unreadable files."""
    if not path.is_file():
        raise InvalidRequestError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InvalidRequestError(
            f"{path}: unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix == ".pdf":
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(path)
            text = "\n".join(page.extract_text() or "" for page in reader.pages)
        except (PdfReadError, OSError, ValueError) as exc:
            raise InvalidRequestError(f"{path}: not a readable PDF ({exc})") from exc
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or path.stem
        return title, text
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{path}: not UTF-8 text") from exc
    if suffix in (".html", ".htm"):
        parser = _TextOfHtml()
        parser.feed(raw)
        return parser.title.strip() or path.stem, "".join(parser.parts)
    return path.stem, raw


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")


def chunk_text(text: str, *, max_chars: int = 800, overlap_chars: int = 150) -> list[str]:
    """Overlapping chunks of about `max_chars`, cut at sentence ends where possible.

    Each chunk after the first starts with the last sentences (up to `overlap_chars`) of the one
    before, so a fact that straddles a boundary is whole in at least one chunk.
    """
    if max_chars <= overlap_chars:
        raise InvalidRequestError("max_chars must be larger than overlap_chars")
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
    pieces: list[str] = []
    for sentence in sentences:  # a sentence longer than a chunk is cut into windows
        pieces += [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars - overlap_chars)]
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(" ".join([*current, piece])) > max_chars:
            chunks.append(" ".join(current))
            tail: list[str] = []
            for previous in reversed(current):
                if len(" ".join([previous, *tail])) > overlap_chars:
                    break
                tail.insert(0, previous)
            current = tail
        current.append(piece)
    if current:
        chunks.append(" ".join(current))
    return chunks
