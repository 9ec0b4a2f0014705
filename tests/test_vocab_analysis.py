"""The whole analysis on tiny texts with hand-built tokenizers, every number checked by hand;
the CLI, its outputs and its errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from longadapt.cli import main
from longadapt.errors import LongAdaptError
from longadapt.vocab import analyze, read_terms, word_counts
from longadapt.languages import load_language

DOC1 = "Le cœur bats, le cardio 12 bat xyz."  # 35 characters
DOC2 = "le cœur."  # 8 characters
TERMS = ["cardio", "bats", "cœur", "le cœur"]

WP_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "Le", "le", "cœur", "bat", "##s", "car", "##dio", ",", "."]


def wordpiece_dir(root: Path) -> Path:
    """A cased WordPiece tokenizer of 12 entries; [UNK] for anything else ("12", "xyz")."""
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(WP_VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(["[UNK]", "[CLS]", "[SEP]"])
    from tokenizers import processors

    tok.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    path = root / "wp"
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    return path


def wordlevel_dir(root: Path) -> Path:
    """A SentencePiece-style word-level tokenizer: whole "▁word" entries only."""
    vocab = {"<unk>": 0, "▁le": 1, "▁cœur": 2, "▁bat": 3, "s": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.add_special_tokens(["<unk>"])
    path = root / "wl"
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    return path


def bytefallback_dir(root: Path) -> Path:
    """BPE with byte fallback: "▁a" is known, "Ä" is written as two byte pieces."""
    vocab = {"▁": 0, "a": 1, "▁a": 2, "<0xC3>": 3, "<0x84>": 4}
    tok = Tokenizer(models.BPE(vocab, [("▁", "a")], byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    path = root / "bf"
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture()
def tiny(tmp_path):
    corpus = tmp_path / "fr.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": str(i), "text": t}) for i, t in enumerate([DOC1, DOC2])) + "\n")
    terms = tmp_path / "terms.txt"
    terms.write_text("\n".join(TERMS) + "\n\n# a comment\n")
    return {"corpus": corpus, "terms": terms, "wp": wordpiece_dir(tmp_path), "wl": wordlevel_dir(tmp_path)}


def test_word_protocol_drops_numbers_and_punctuation():
    counts = word_counts([DOC1, DOC2], load_language("fr"))
    assert counts == {"Le": 1, "cœur": 2, "bats": 1, "le": 2, "cardio": 1, "bat": 1, "xyz": 1}
    # French elision and hyphens follow spaCy's rules; "3,5" and "[6]" are no words
    counts = word_counts(["l’épigastre J+3 3,5 [6] mg/kg"], load_language("fr"))
    assert "l’" in counts and "épigastre" in counts
    assert not {"3,5", "[6]", "6", "[", "]"} & set(counts)


def test_every_metric_by_hand(tiny):
    res = analyze("fr", tiny["corpus"], [f"wp={tiny['wp']}", f"wl={tiny['wl']}"], tiny["terms"],
                  max_lengths=[10, 16], progress=False)
    r = res.row("fr", "wp")
    # words: Le cœur bats le cardio bat xyz | le cœur  -> 9 words
    # pieces: 1 1 2 1 2 1 1(UNK) | 1 1 -> 11; continued: bats, cardio; UNK: xyz
    assert r["words"] == 9 and r["word_types"] == 7
    assert r["fertility"] == pytest.approx(11 / 9)
    assert r["continued_words"] == pytest.approx(2 / 9)
    assert r["unk_words"] == pytest.approx(1 / 9)
    assert r["byte_fallback_pieces"] is None
    # running text: Le cœur bat ##s , le car ##dio [UNK] bat [UNK] . | le cœur .  -> 12 + 3 tokens
    assert r["tokens"] == 15
    assert r["chars_per_token"] == pytest.approx((35 + 8) / 15)
    # piece counts: Le 1, le 2, cœur 2, bat 2, ##s 1, car 1, ##dio 1, "," 1, "." 2, [UNK] 2 over |V| = 12
    counts = [1, 2, 2, 2, 1, 1, 1, 1, 2, 2]
    h = math.log(sum((c / 15) ** 2.5 for c in counts)) / (1 - 2.5)
    assert r["renyi_efficiency"] == pytest.approx(h / math.log(12))
    assert r["vocab_used"] == pytest.approx(10 / 12)
    # lengths with [CLS]/[SEP]: 14 and 5
    assert r["effective_context_words@10"] == pytest.approx(10 / (11 / 9))
    assert r["docs_longer@10"] == pytest.approx(0.5)
    assert r["docs_longer@16"] == pytest.approx(0.0)
    # terms: cardio 2, bats 2, cœur 1, "le cœur" 2
    assert r["terms"] == 4
    assert r["term_whole"] == pytest.approx(0.25)
    assert r["term_pieces"] == pytest.approx(7 / 4)

    w = res.row("fr", "wl")
    # "▁bats" and "▁cardio" and "▁xyz" are unknown as whole words; "le" and "cœur" are known
    assert w["fertility"] == pytest.approx(1.0)
    assert w["unk_words"] == pytest.approx(4 / 9)  # Le, bats, cardio, xyz
    assert w["scheme"] == "metaspace"

    (pair,) = res.pairs
    # canonical vocabularies: wp {▁Le ▁le ▁cœur ▁bat s ▁car dio ▁, ▁.} (9), wl {▁le ▁cœur ▁bat s} (4)
    assert (pair["vocab_a"], pair["vocab_b"], pair["shared"]) == (9, 4, 4)
    assert pair["jaccard"] == pytest.approx(4 / 9)
    # wp tokens whose form wl has: le 2 + cœur 2 + bat 2 + s 1 = 7 of 15
    assert pair["weighted_a_in_b"] == pytest.approx(7 / 15)
    # wl running text: ▁Le? ▁cœur ▁bats,? ▁le ▁cardio? ▁12? ▁bat ▁xyz.? | ▁le ▁cœur.? -> 4 known of 10
    assert pair["weighted_b_in_a"] == pytest.approx(4 / 10)


def test_byte_fallback_share(tmp_path):
    res = analyze("fr", [["a Ä a"]], [str(bytefallback_dir(tmp_path))], max_lengths=[4], progress=False)
    r = res.rows[0]
    # words a, Ä, a: "▁a" 1 piece, "▁Ä" = ▁ <0xC3> <0x84> 3 pieces, 2 of them byte pieces
    assert r["fertility"] == pytest.approx(5 / 3)
    assert r["continued_words"] == pytest.approx(1 / 3)
    assert r["byte_fallback_pieces"] == pytest.approx(2 / 5)
    assert r["unk_words"] is None
    assert r["docs_longer@4"] == pytest.approx(1.0)  # 5 tokens


def test_side_by_side_languages_and_term_formats(tiny, tmp_path):
    de = tmp_path / "de.txt"
    de.write_text("Le cœur bat.\n\nle le\n")  # one document per line, blank lines skipped
    iob = tmp_path / "ents.iob"
    iob.write_text("Le O\ncœur B-ety\nbats I-ety\n, O\n\ncardio B-ety\n")
    assert read_terms(iob) == ["cœur bats", "cardio"]
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "a.ann").write_text("T1\tDISO 0 6\tcardio\n#1\tAnnotatorNotes T1\tx\nT2\tDISO 8 12\tcœur\n")
    assert read_terms(brat) == ["cardio", "cœur"]
    res = analyze("fr,de", [tiny["corpus"], de], [str(tiny["wp"])], [brat, iob], progress=False)
    assert [r["language"] for r in res.rows] == ["fr", "de"]
    assert res.row("fr", "wp")["term_whole"] == pytest.approx(0.5)  # cardio 2 pieces, cœur 1
    de_row = res.row("de", "wp")
    assert de_row["docs"] == 2 and de_row["words"] == 5
    assert de_row["term_pieces"] == pytest.approx((3 + 2) / 2)  # "cœur bats" 3 pieces, cardio 2


def test_cli_writes_all_outputs(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["vocab", "--language", "fr", "--corpus", str(tiny["corpus"]), "--tokenizer", f"wp={tiny['wp']}",
               "--tokenizer", str(tiny["wl"]), "--terms", str(tiny["terms"]), "--max-length", "10", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.csv", "metrics.json", "pairs.csv", "report.md", "fertility.png", "doc_lengths_fr.png"} <= names
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temporary directory is gone
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["tokenizer"] for r in rows] == ["wp", "wl"]
    assert float(rows[0]["fertility"]) == pytest.approx(11 / 9)
    data = json.loads((out / "metrics.json").read_text())
    assert data["config"]["max_lengths"] == [10]
    assert "renyi_efficiency = H_2.5(p) / log|V|" in data["protocol"]
    report = (out / "report.md").read_text()
    assert "| fr | wp | 1.222 |" in report and "![fertility.png](fertility.png)" in report
    assert (out / "fertility.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.strip().endswith("report.md, metrics.csv, metrics.json, pairs.csv")
    # one tokenizer: no pairs to compare, so no pairs.csv (not an empty one reported as written)
    rc = main(["vocab", "--language", "fr", "--corpus", str(tiny["corpus"]), "--tokenizer", f"wp={tiny['wp']}",
               "--max-length", "10", "--no-progress", "--no-plots", "--out", str(tmp_path / "one")])
    assert rc == 0 and not (tmp_path / "one" / "pairs.csv").exists()
    assert capsys.readouterr().out.strip().endswith("one/report.md, metrics.csv, metrics.json")


def test_cli_errors_are_clear(tiny, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        (["--language", "xx", "--corpus", str(tiny["corpus"])], "unknown language 'xx'"),
        (["--language", "fr", "--corpus", str(empty)], "empty.jsonl holds no documents (no record found)"),
        (["--language", "fr", "--corpus", str(tmp_path / "nope.jsonl")], "nope.jsonl does not exist"),
        (["--language", "fr,de", "--corpus", str(tiny["corpus"])], "1 corpus value(s) for 2 language(s)"),
    ]
    for extra, message in cases:
        rc = main(["vocab", *extra, "--tokenizer", str(tiny["wp"]), "--out", str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2, extra
        assert message in err and "Traceback" not in err, err
    rc = main(["vocab", "--language", "fr", "--corpus", str(tiny["corpus"]), "--tokenizer", str(tmp_path / "no" / "tok"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_api_errors(tiny, tmp_path):
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "   "}\n{"text": ""}\n')
    with pytest.raises(LongAdaptError, match=r"blank.jsonl holds no documents \(2 record\(s\) read, all blank\)"):
        analyze("fr", blank, [str(tiny["wp"])], progress=False)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("12 13, 14.\n")
    with pytest.raises(LongAdaptError, match="no words with letters"):
        analyze("fr", numbers, [str(tiny["wp"])], progress=False)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(LongAdaptError, match=r"broken.jsonl, line 2: no field 'text'"):
        analyze("fr", broken, [str(tiny["wp"])], progress=False)
    with pytest.raises(LongAdaptError, match="no tokenizer given"):
        analyze("fr", tiny["corpus"], [], progress=False)
