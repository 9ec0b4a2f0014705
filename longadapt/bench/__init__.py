"""longadapt.bench."""
