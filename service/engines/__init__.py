"""Inference backends behind the `Engine` protocol."""
