"""The OpenAI-compatible HTTP service: the FastAPI app, its routes and schemas, and the plumbing that makes it
safe to expose (admission control, limits, middleware, error mapping)."""
