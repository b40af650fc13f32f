"""Realtime gateway (spec 10): per-project Redis streams fanned out to WebSocket and SSE clients."""
