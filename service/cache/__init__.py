"""The content-hash cache of translations and summaries (sentence and article entries)."""
