"""Signals: facts extracted from a request (one file per YAML ``type:``)."""
