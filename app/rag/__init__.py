"""RAG plumbing: read documents, chunk them, embed them and keep them in a vector store."""

from prunekit.app.rag.documents import Chunk, chunk_text, read_document
from prunekit.app.rag.store import VectorStore

__all__ = ["Chunk", "VectorStore", "chunk_text", "read_document"]
