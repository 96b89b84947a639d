import pytest

from prunekit.app.rag.documents import Chunk
from prunekit.app.rag.store import VectorStore
from prunekit.decoding.backends.embeddings import load_embedder
from prunekit.decoding.errors import InvalidRequestError


@pytest.fixture()
def store(tmp_path):
    s = VectorStore(load_embedder(), path=tmp_path / "qdrant")
    yield s
    s.close()


def chunks(texts, source="doc.txt"):
    return [Chunk(text=t, source=source, index=i, title="doc") for i, t in enumerate(texts)]


def test_search_finds_the_relevant_chunk(store):
    store.add(
        "notes",
        chunks(["The Eiffel Tower is in Paris.", "Photosynthesis makes sugar from light.", "SQL joins tables."]),
    )
    hits = store.search("notes", "Where is the Eiffel Tower?", k=2)
    assert hits[0].chunk.text == "The Eiffel Tower is in Paris." and hits[0].score > hits[1].score
    assert store.collections() == ["notes"]


def test_reingesting_updates_instead_of_duplicating(store):
    store.add("notes", chunks(["alpha", "beta"]))
    store.add("notes", chunks(["alpha", "beta"]))
    assert len(store.search("notes", "alpha", k=10)) == 2


def test_unknown_collection_and_bad_names(store):
    with pytest.raises(InvalidRequestError, match="does not exist"):
        store.search("nothing-here", "q")
    with pytest.raises(InvalidRequestError, match="collection names"):
        store.add("bad name!", chunks(["x"]))
