"""longadapt.data."""
