"""Event sources: pollers that turn queue and stream records into batched invocations."""
