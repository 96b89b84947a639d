"""Each adapter with its real library; skipped when the library is not installed (optional extras), a failure
under CI=true, which installs them all."""

import pytest

from prunekit.context_pruner.errors import InvalidQuestionError
from prunekit.context_pruner.integrations.common import METADATA_KEY, SCORE_KEY
from prunekit.context_pruner.pruner import ContextPruner
from tests.conftest import require_module

EIFFEL = "The Eiffel Tower is a wrought-iron lattice tower. It is located in Paris, France. Cats like to sleep."
OFF_TOPIC = "Bananas are rich in potassium. They grow in tropical regions."
QUESTION = "In which city is the Eiffel Tower located?"


@pytest.fixture(scope="module")
def pruner() -> ContextPruner:
    return ContextPruner()


def test_langchain_compressor(pruner):
    require_module("langchain_core", "the LangChain adapter (the dev extra: pip install -e '.[dev]')")
    from langchain_core.documents import Document

    from prunekit.context_pruner.integrations.langchain import ProvenceDocumentCompressor

    docs = [
        Document(page_content=OFF_TOPIC, metadata={"source": "b"}),
        Document(page_content=EIFFEL, metadata={"source": "a"}),
    ]
    out = ProvenceDocumentCompressor(pruner=pruner, threshold=0.5).compress_documents(docs, QUESTION)
    assert [d.metadata["source"] for d in out] == ["a"]  # the off-topic one is dropped, metadata kept
    direct = pruner.prune(QUESTION, [OFF_TOPIC, EIFFEL], threshold=0.5)[1]  # the adapter passes the pruner's cut on
    assert out[0].page_content == direct.pruned_text and "Paris" in out[0].page_content
    assert out[0].metadata[SCORE_KEY] == pytest.approx(direct.rerank_score)
    assert out[0].metadata[METADATA_KEY]["compression"] == pytest.approx(direct.compression)
    assert docs[1].page_content == EIFFEL  # the caller's documents are untouched
    with pytest.raises(InvalidQuestionError):
        ProvenceDocumentCompressor(pruner=pruner).compress_documents(docs, " ")


def test_llamaindex_postprocessor(pruner):
    require_module("llama_index.core", "the LlamaIndex adapter (the dev extra: pip install -e '.[dev]')")
    from llama_index.core.schema import NodeWithScore, TextNode

    from prunekit.context_pruner.integrations.llamaindex import ProvenceNodePostprocessor

    nodes = [
        NodeWithScore(node=TextNode(text=OFF_TOPIC, metadata={"file": "b"}), score=0.9),
        NodeWithScore(node=TextNode(text=EIFFEL, metadata={"file": "a"}), score=0.1),
    ]
    post = ProvenceNodePostprocessor(pruner=pruner, threshold=0.5, drop_empty=False)
    out = post.postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.metadata["file"] for n in out] == ["a", "b"]  # reordered by rerank score
    assert out[0].score == out[0].node.metadata[SCORE_KEY] > out[1].score
    assert "Paris" in out[0].node.get_content() and nodes[1].node.text == EIFFEL
    assert SCORE_KEY in out[0].node.excluded_llm_metadata_keys
    with pytest.raises(InvalidQuestionError):
        post.postprocess_nodes(nodes)


def test_haystack_component(pruner):
    require_module("haystack", "the Haystack adapter (the dev extra: pip install -e '.[dev]')")
    from haystack import Document, Pipeline

    from prunekit.context_pruner.integrations.haystack import ProvenceContextPruner

    docs = [Document(content=OFF_TOPIC, meta={"k": 2}), Document(content=EIFFEL, meta={"k": 1})]
    pipe = Pipeline()
    pipe.add_component("pruner", ProvenceContextPruner(pruner=pruner, threshold=0.5))
    out = pipe.run({"pruner": {"query": QUESTION, "documents": docs}})["pruner"]["documents"]
    assert [d.meta["k"] for d in out] == [1]
    assert out[0].score == out[0].meta[SCORE_KEY] and "Paris" in out[0].content
    assert docs[1].content == EIFFEL
