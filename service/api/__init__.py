"""HTTP routes: thin shells over the pipeline (native `/v1`, LibreTranslate-compatible, operations)."""
