"""Routing with generated data (Niu et al. 2026): ``router-proxy generate``.

A generator model writes queries (with its own answer) from plain-language task
descriptions; every pool model answers every query through the policy's providers; the
queries whose answers agree with the generator and separate the pool become wide-JSONL
rows (``responses``, ``costs``; no ``scores``) for ``router-proxy train --algorithm cascal``.

tasks.py       TASKS.yaml (pydantic; errors name the YAML path) and the answer formats
templates.py   the prompts, package data under templates/
calls.py       one model call through the providers: retries, cost from measured usage
store.py       the journal that makes a run resumable, and the output files
generation.py  the generator's calls: prompt, parsing, near-duplicate removal
answering.py   the pool's calls: prompt and answer extraction
filters.py     generator agreement and pool differentiation
pipeline.py    the run: generate -> dedup -> answer -> filter -> rows, with progress
report.py      what a run kept and dropped, calls and dollars (DATA.report.json)
command.py     the CLI subcommand
"""
