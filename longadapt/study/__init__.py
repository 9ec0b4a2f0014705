"""Studies: strategies x arms x budgets x tasks x seeds, with a learning-rate search, run as resumable
stages and read as one verdict report (``longadapt study FILE``; docs/study.md)."""
