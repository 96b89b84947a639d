"""The LLM backends behind `decoding.ChatModel`: the embedded model (llama.cpp fast path, transformers),
any OpenAI-compatible server, and what they share (loading, sampling, stops, penalties, the context window).
The two in-process ones are `decoding.LocalBackend`s: tokens, EOS, vocabulary, log-probs, context window."""
