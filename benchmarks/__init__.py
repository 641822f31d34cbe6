"""Speed and memory benchmarks (see README.md)."""
