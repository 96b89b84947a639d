"""RAG plumbing: read documents, chunk them, embed them and keep them in a vector store."""

from app.rag.documents import Chunk, chunk_text, read_document
from app.rag.store import VectorStore

__all__ = ["Chunk", "VectorStore", "chunk_text", "read_document"]
