"""Speed and quality benchmarks, run as modules: ``python -m benchmarks.<name>``."""
