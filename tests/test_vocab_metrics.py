"""Each metric of longadapt.vocab.metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from longadapt.vocab import metrics as M


@pytest.mark.parametrize("token", ["12", "3,5", "2019-2020", "[6]", "...", "%", "+", "«", "1/2", "\n", "  ", "10⁵"])
def test_digits_and_punctuation_are_not_words(token):
    assert not M.is_word(token)


@pytest.mark.parametrize("token", ["cœur", "COVID-19", "m²", "l’", "J+3", "Ä", "ñ", "x"])
def test_words_need_one_letter(token):
    assert M.is_word(token)


def test_fertility_continued_and_flags_weighted_by_counts():
    pieces = [1, 2, 3]
    counts = [5, 3, 2]
    # (1*5 + 2*3 + 3*2) / 10 = 17/10
    assert M.fertility(pieces, counts) == pytest.approx(1.7)
    assert M.fertility(pieces) == pytest.approx(2.0)
    assert M.continued_share(pieces, counts) == pytest.approx(0.5)
    assert M.flagged_share([False, True, False], counts) == pytest.approx(0.3)
    # byte pieces 0, 1, 2 of 17 pieces in all: (0*5 + 1*3 + 2*2) / 17
    assert M.byte_fallback_share([0, 1, 2], pieces, counts) == pytest.approx(7 / 17)


def test_chars_per_token_and_context():
    assert M.chars_per_token(43, 15) == pytest.approx(43 / 15)
    assert math.isnan(M.chars_per_token(10, 0))
    assert M.effective_context(512, 2.0) == 256
    assert M.effective_context(4096, 1.6) == pytest.approx(2560)
    # lengths + 2 special tokens compared with 512: 511 -> 513 > 512, 510 -> 512 not longer
    assert M.share_longer([100, 510, 511, 2000], 512, special_tokens=2) == pytest.approx(0.5)
    assert M.share_longer([100, 510, 511, 2000], 512) == pytest.approx(0.25)


def test_renyi_efficiency_hand_computation():
    counts = [6, 3, 1, 0]  # p = 0.6, 0.3, 0.1; the unused fourth entry still counts in |V|
    alpha = 2.5
    s = 0.6**2.5 + 0.3**2.5 + 0.1**2.5  # 0.278855... + 0.049295... + 0.003162...
    h = math.log(s) / (1 - alpha)
    assert s == pytest.approx(0.3313125, abs=1e-6)
    assert M.renyi_entropy(counts, alpha) == pytest.approx(h)
    assert M.renyi_efficiency(counts, vocab_size=8, alpha=alpha) == pytest.approx(h / math.log(8))
    # ln(0.3313125) = -1.104703; / (1 - 2.5) = 0.736469; / ln 8 (2.079442) = 0.354164
    assert M.renyi_efficiency(counts, vocab_size=8) == pytest.approx(0.354164, abs=1e-6)
    # uniform over the whole vocabulary: efficiency 1 for every alpha
    assert M.renyi_efficiency([5, 5, 5, 5], vocab_size=4) == pytest.approx(1.0)
    # alpha -> 1 is the Shannon entropy
    assert M.renyi_entropy(counts, 1) == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))


def test_vocab_used_and_terms():
    assert M.vocab_used_share([3, 0, 1, 0, 0], 10) == pytest.approx(0.2)
    whole, mean = M.term_coverage([1, 2, 1, 4])
    assert whole == pytest.approx(0.5)
    assert mean == pytest.approx(2.0)


def test_overlap_plain_and_weighted():
    a = {"▁le", "▁cœur", "s", "dio"}
    b = {"▁le", "▁cœur", "▁bat", "s", "x", "y"}
    jac, shared = M.vocab_overlap(a, b)
    assert shared == 3
    assert jac == pytest.approx(3 / 7)
    freq_a = {"▁le": 5, "▁cœur": 2, "dio": 3, None: 10}  # None: unknown-token mass, never shared
    assert M.weighted_overlap(freq_a, b) == pytest.approx(7 / 20)
