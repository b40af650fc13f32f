"""Realtime events (spec 10): the schema and the Redis-stream bus producers publish to."""
