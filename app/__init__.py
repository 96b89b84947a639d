"""app: the front door. LangGraph graphs that compose the cores, the OpenAI-compatible service, the CLI.

Holds no method logic: everything here wires `decoding`, `context_pruner`, `graph_pruning`, `nl2sql`
and `eval` together.
"""
