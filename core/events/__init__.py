"""core/events package."""
