"""Progress of long passes: a bar on a terminal, log lines (done, rate, time left) in a log file."""

from __future__ import annotations

import logging

from longadapt.progress import progress, progress_line


def test_a_pass_written_to_a_log_says_how_far_it_is_and_how_long_is_left(caplog) -> None:
    caplog.set_level(logging.INFO, logger="longadapt.progress")
    assert list(progress(range(4), "fr-e3c-ner-doc seed 0 epoch 1/10", unit="step", every_s=0, terminal=False)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith("fr-e3c-ner-doc seed 0 epoch 1/10: 1/4 step (25 %), ") and " left" in lines[0]
    assert lines[-1].startswith("fr-e3c-ner-doc seed 0 epoch 1/10: 4/4 steps (100 %), ") and "left" not in lines[-1]
    caplog.clear()
    assert list(progress(iter("abc"), "predict: documents read", unit="doc", every_s=0, terminal=False)) == list("abc")
    assert caplog.records[-1].getMessage().startswith("predict: documents read: 3 docs, ")  # no total: no estimate
    caplog.clear()
    list(progress(range(4), "quiet", every_s=3600, terminal=False))  # a short pass says nothing
    assert not caplog.records


def test_the_progress_line_counts_and_estimates_by_hand() -> None:
    assert progress_line("predicting 80 windows", 10, 40, 20.0, "batch") == \
        "predicting 80 windows: 10/40 batches (25 %), 0.50 batch/s, about 60 s left"
    assert progress_line("epoch 1/10", 1, 200, 30.0, "step") == "epoch 1/10: 1/200 step (0 %), 0.03 step/s, about 1 h 39 min left"
