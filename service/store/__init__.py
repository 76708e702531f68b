"""What is on disk: the model store (install, import, pull, fingerprints) and CTranslate2 conversion."""
