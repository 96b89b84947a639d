import itertools

import pytest

from prunekit.app.rag.documents import chunk_text, read_document
from prunekit.decoding.errors import InvalidRequestError

TEXT = " ".join(f"Sentence number {i} says something about topic {i % 5}." for i in range(60))


def test_chunks_are_bounded_overlapping_and_lose_nothing():
    chunks = chunk_text(TEXT, max_chars=300, overlap_chars=80)
    assert len(chunks) > 5
    assert all(len(c) <= 300 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.split(". ")[0] in before  # each chunk starts with the end of the previous one
    for i in range(60):
        assert any(f"Sentence number {i} " in c for c in chunks)


def test_a_very_long_sentence_is_windowed():
    chunks = chunk_text("x" * 1000, max_chars=300, overlap_chars=50)
    assert all(len(c) <= 300 for c in chunks) and sum(len(c) for c in chunks) >= 1000


def test_bad_chunk_sizes():
    with pytest.raises(InvalidRequestError):
        chunk_text("abc", max_chars=100, overlap_chars=100)


def test_read_text_markdown_and_html(tmp_path):
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "b.md").write_text("# Title\n\nSome *markdown*.")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page</title><style>p{}</style></head><body><p>Hello</p><script>x()</script><p>World</p></body></html>"
    )
    assert read_document(tmp_path / "a.txt") == ("a", "plain text")
    assert read_document(tmp_path / "b.md")[1].startswith("# Title")
    title, text = read_document(tmp_path / "c.html")
    assert title == "Page" and "Hello" in text and "World" in text and "x()" not in text and "p{}" not in text


def test_read_pdf(tmp_path):
    from pypdf import PdfWriter
    from pypdf.generic import NameObject

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": "Blank"})
    path = tmp_path / "d.pdf"
    with path.open("wb") as f:
        writer.write(f)
    assert read_document(path)[0] == "Blank"
    assert NameObject  # pypdf is importable for real PDF work


@pytest.mark.parametrize(
    ("name", "content", "fragment"), [("x.docx", b"..", "unsupported"), ("bad.pdf", b"not a pdf", "PDF")]
)
def test_bad_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=fragment):
        read_document(path)
    with pytest.raises(InvalidRequestError, match="not a file"):
        read_document(tmp_path / "missing.txt")
