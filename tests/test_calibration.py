"""Output-bias calibration (longadapt.recipes.calibration): after it, the model's mean prediction at
masked positions matches the new tokenizer's token frequencies, special tokens are untouched, and bad
input stops with a message."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from longadapt.data import MLMCollator
from longadapt.errors import LongAdaptError
from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
from longadapt.recipes.calibration import _mean_prediction, _rows, calibrate_output_bias
from longadapt.tokenizers.training import train_tokenizer


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    with gzip.open(shared_data / "corpora" / "fr.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line)["text"] for _, line in zip(range(400), fh)]
    return [d[:2000] for d in docs[::10]]


@pytest.fixture(scope="module")
def tok(texts):
    return train_tokenizer(texts, "fr", 512)


def _model(vocab_size: int, bias: bool = True) -> LongAdaptForMaskedLM:
    torch.manual_seed(0)
    cfg = LongAdaptConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=256, local_attention=32, decoder_bias=bias,
    )
    model = LongAdaptForMaskedLM(cfg)
    if bias:
        with torch.no_grad():
            model.decoder.bias.normal_(0, 2.0)  # a prior far from the corpus's
    return model


def test_calibration_matches_token_frequencies(one_thread, texts, tok):
    model = _model(len(tok))
    before = model.decoder.bias.detach().clone()
    special = tok.all_special_ids
    report = calibrate_output_bias(model, tok, texts, max_length=128, max_rows=40, iterations=2)
    assert report.rows == 40 and report.masked_positions > 500
    assert report.cross_entropy_after < report.cross_entropy_before - 1.0
    # cross-entropy of the frequencies against the mean prediction is at most 0.05 nats above their entropy
    assert report.cross_entropy_after - report.entropy < 0.05, report
    # the marginal now matches token by token, on the same rows and masks
    rows, counts, _ = _rows(tok, texts, 128, 40)
    total, n = _mean_prediction(model.eval(), rows, MLMCollator(tok, mlm_probability=0.15, seed=0), 8, len(tok))
    q = total / n
    p = (counts + 0.5)
    p[special] = 0
    p = p / p.sum()
    frequent = counts >= 50
    assert frequent.sum() > 20
    assert torch.allclose(q[frequent].log(), p[frequent].log(), atol=0.1)
    # special tokens keep their bias; the others moved
    after = model.decoder.bias.detach()
    assert torch.equal(after[special], before[special])
    assert (after - before).abs().max() > 1.0


def test_calibration_is_deterministic_and_keeps_training_mode(one_thread, texts, tok):
    a, b = _model(len(tok)), _model(len(tok))
    a.train()
    calibrate_output_bias(a, tok, texts, max_length=128, max_rows=8)
    calibrate_output_bias(b, tok, texts, max_length=128, max_rows=8)
    assert a.training and torch.equal(a.decoder.bias, b.decoder.bias)


def test_calibration_errors(texts, tok):
    with pytest.raises(LongAdaptError, match="no MLM decoder bias.*calibrate_bias=false"):
        calibrate_output_bias(_model(len(tok), bias=False), tok, texts)
    with pytest.raises(LongAdaptError, match="at least one text"):
        calibrate_output_bias(_model(len(tok)), tok, [])
    with pytest.raises(LongAdaptError, match="decoder only 64 rows"):
        calibrate_output_bias(_model(64), tok, texts)
    with pytest.raises(LongAdaptError, match="give no tokens"):
        calibrate_output_bias(_model(len(tok)), tok, ["", ""])
