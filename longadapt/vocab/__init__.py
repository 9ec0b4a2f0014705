"""longadapt.vocab."""
