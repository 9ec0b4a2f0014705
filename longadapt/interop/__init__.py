"""longadapt.interop."""
