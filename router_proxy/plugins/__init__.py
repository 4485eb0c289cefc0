"""Plugins: per-decision edits to the request, applied after selection."""
