"""prunekit: lean LLM pipelines from four published methods.

The code lives in the folders beside this one; the install maps each under this name (pyproject.toml's
`package-dir`), so that prunekit claims one import name in a user's environment, never generic ones like `app`:

    prunekit.decoding        floor 1: the only place that talks to an LLM (backends + Deco-G)
    prunekit.context_pruner  floor 2: Provence context pruning
    prunekit.graph_pruning   floor 2: AGP multi-agent graph pruning
    prunekit.nl2sql          floor 2: LearNAT NL2SQL
    prunekit.eval            floor 3: evaluations and benchmarks
    prunekit.app             floor 4: the service, the CLI and the LangGraph graphs that wire the cores

A package imports only from the floors below it (docs/architecture.md).
"""

__version__ = "0.1.0"
