"""longadapt.training."""
