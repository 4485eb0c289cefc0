"""Offline work: train selectors from routing data, evaluate them, generate data."""
