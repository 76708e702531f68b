"""Tiny real models built in seconds with the real classes, for tests and benchmarks (nothing is downloaded)."""
