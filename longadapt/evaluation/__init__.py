"""longadapt.evaluation: task readers, metrics, task registry, long-document windows,
fine-tuning and comparison reports.

Modules: :mod:`.data` (data model), :mod:`.readers` (IOB, BRAT, UIMA XMI, TSV, MCQA JSON,
CodiEsp), :mod:`.metrics`, :mod:`.tasks` (YAML task registry), :mod:`.windows` (sliding windows
and merging), :mod:`.finetune` (accelerate fine-tuning), :mod:`.report` (comparison reports),
:mod:`.cli` (``longadapt evaluate`` and ``longadapt compare``).
"""
