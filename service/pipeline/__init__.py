"""The pipelines that HTTP, CLI and cluster runs share: translation (clean -> detect -> segment -> cache ->
batch -> join) and summaries."""
