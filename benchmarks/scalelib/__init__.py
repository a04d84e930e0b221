"""Pure parts of the scale benchmark (`benchmarks/scale.py`): statistics, thresholds, reports.

Nothing here starts processes or reads clocks, so tests/test_bench_*.py check it synchronously.
"""
