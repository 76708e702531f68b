"""Text before and after the model: cleaning, paragraphs and sentences, language id, HTML text runs (pure
functions, no models)."""
