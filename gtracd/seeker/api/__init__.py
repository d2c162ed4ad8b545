"""The seeker's OpenAI-compatible HTTP API (`gtracd --role seeker serve --http`): plain ASGI over the
request service."""
