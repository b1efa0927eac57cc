"""Speed and memory targets: `python -m benchmarks.<name>` prints a table."""
