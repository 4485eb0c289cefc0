"""Decisions: Boolean rules over signals, ordered by priority; the first match wins."""
