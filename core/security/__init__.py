"""core/security package."""
