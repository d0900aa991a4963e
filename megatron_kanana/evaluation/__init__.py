"""Benchmarks through lm-evaluation-harness: `kanana eval` and the in-process `evaluate()`."""
