"""Prometheus metrics and JSON request logs."""
