"""Command-line entry points (the voiceai admin CLI)."""
