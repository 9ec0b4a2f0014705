"""longadapt.evaluation."""
