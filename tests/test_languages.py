"""Language packs: the YAML files and their loader."""

from __future__ import annotations

import pytest

from longadapt.errors import LongAdaptError
from longadapt.languages import LanguagePack, available_languages, load_language


def test_all_packs_load():
    assert {"fr", "de", "es", "en", "it"} <= set(available_languages())
    for code in ("fr", "de", "es", "en", "it"):
        pack = load_language(code)
        assert isinstance(pack, LanguagePack)
        assert pack.code == code and pack.name
        assert pack.corpora and pack.corpora[0].path == f"corpora/{code}.jsonl.gz"


def test_word_tokenizer_is_rule_based_and_language_specific():
    fr = load_language("fr").word_tokenizer()
    assert fr.pipe_names == []  # spacy.blank: no trained component
    assert [t.text for t in fr("l’épigastre d’un patient")] == ["l’", "épigastre", "d’", "un", "patient"]
    de = load_language("de").word_tokenizer()
    assert de.lang == "de"
    assert [t.text for t in de("Der Patient kam z.B. heute, ca. 3 Std.")] == ["Der", "Patient", "kam", "z.B.", "heute", ",", "ca.", "3", "Std."]


def test_sentence_splitter_rule_based():
    nlp = load_language("es").sentence_splitter(prefer_pipeline=False)
    doc = nlp("El paciente llegó. Tenía fiebre.")
    assert [s.text for s in doc.sents] == ["El paciente llegó.", "Tenía fiebre."]


def test_unknown_code_and_bad_pack(tmp_path, monkeypatch):
    with pytest.raises(LongAdaptError, match="unknown language 'xx'.*Known languages: .*fr"):
        load_language("xx")
    monkeypatch.setenv("LONGADAPT_LANGUAGES", str(tmp_path))
    (tmp_path / "zz.yaml").write_text("code: yy\nname: Wrong\n")
    with pytest.raises(LongAdaptError, match="field 'code' is 'yy'"):
        load_language("zz")
    (tmp_path / "ww.yaml").write_text("code: ww\nname: W\ncolour: blue\n")
    with pytest.raises(LongAdaptError, match="unknown key 'colour'"):
        load_language("ww")
