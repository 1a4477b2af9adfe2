"""Benchmarks and quality reports; run from the repository root (`python -m bench…`)."""
