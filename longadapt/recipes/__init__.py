"""longadapt.recipes."""
