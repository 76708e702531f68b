"""Inference: the backends behind the `Engine` protocol, the model manager that loads them and the batcher
that feeds them."""
