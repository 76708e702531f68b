"""Side-by-side benchmark of newsmt against the raw engines it wraps (`python -m bench.run`)."""
