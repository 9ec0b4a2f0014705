"""The RoPE long-context encoder core."""


def register_auto_classes() -> None:
    """Register the core with the transformers Auto classes (filled in with the core)."""
