"""The serving layer every HTTP route goes through: in-flight limits, time-outs, coalescing, rate limits, metrics."""
