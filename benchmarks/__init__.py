"""pysfu's benchmarks: each suite runs as ``python -m benchmarks.<suite>`` from
the repository root (see ``benchmarks/README.md``)."""
