"""Corpus reading: every format, cleaning, de-duplication, the real bundle, and user errors."""

from __future__ import annotations

import gzip
import json
import unicodedata

import pytest

from longadapt.data import CorpusSpec, Document, clean_text, read_corpus
from longadapt.data.corpus import resolve_format
from longadapt.errors import LongAdaptError


def _texts(spec: CorpusSpec, **kw) -> list[str]:
    return [d.text for d in read_corpus(spec, **kw)]


# ---------------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------------


def test_clean_text_keeps_line_breaks_and_collapses_spaces():
    raw = "\ufeffMotif :\t  douleur   thoracique  \r\nATCD :\u00a0HTA\r\n\r\n\r\n\r\n  Examen : normal \n\n\nFin"
    assert clean_text(raw) == "Motif : douleur thoracique\nATCD : HTA\n\nExamen : normal\n\nFin"


def test_clean_text_unicode_normal_form():
    nfd = unicodedata.normalize("NFD", "échocardiographie à 5 µg/m²")
    assert nfd != "échocardiographie à 5 µg/m²"
    assert clean_text(nfd, "NFC") == "échocardiographie à 5 µg/m²"
    # NFKC rewrites clinical symbols (the reason NFC is the default)
    assert clean_text("5 µg/m²", "NFKC") == "5 μg/m2"
    assert clean_text(nfd, "none") == nfd


def test_language_pack_normalization_applies(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": unicodedata.normalize("NFD", "fièvre")}) + "\n", encoding="utf-8")
    assert _texts(CorpusSpec(str(path)), language="fr") == ["fièvre"]
    assert _texts(CorpusSpec(str(path), normalization="none"), language="fr") == [unicodedata.normalize("NFD", "fièvre")]


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------


def test_text_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("Patient 1.\nLigne 2.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Patient 2.", encoding="utf-8")
    docs = list(read_corpus(CorpusSpec(str(tmp_path))))
    assert docs == [Document("a", "Patient 1.\nLigne 2."), Document("b", "Patient 2.")]
    assert resolve_format(CorpusSpec(str(tmp_path))) == "text"


def test_text_blank_line_separated(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Doc un\nligne deux\n\nDoc deux\n \n\n\nDoc trois\n", encoding="utf-8")
    docs = list(read_corpus(CorpusSpec(str(path), text_documents="blank_line")))
    assert [d.text for d in docs] == ["Doc un\nligne deux", "Doc deux", "Doc trois"]
    assert [d.id for d in docs] == ["notes:1", "notes:2", "notes:3"]


def test_jsonl_plain_and_gzip_with_text_field(tmp_path):
    rows = [{"doc": "x1", "body": "premier texte"}, {"doc": "x2", "body": "second texte"}]
    plain = tmp_path / "c.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    gz = tmp_path / "c2.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    for path in (plain, gz):
        docs = list(read_corpus(CorpusSpec(str(path), text_field="body", id_field="doc")))
        assert docs == [Document("x1", "premier texte"), Document("x2", "second texte")]
    # without an id field the id is file:line
    docs = list(read_corpus(CorpusSpec(str(plain), text_field="body")))
    assert [d.id for d in docs] == ["c.jsonl:1", "c.jsonl:2"]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "content": ["texte A", "texte B"]}), path)
    assert list(read_corpus(CorpusSpec(str(path), text_field="content"))) == [
        Document("a", "texte A"), Document("b", "texte B")
    ]
    with pytest.raises(LongAdaptError, match=r"c\.parquet.*no column 'text'.*content"):
        list(read_corpus(CorpusSpec(str(path))))


def test_saved_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["un", "deux", "un"], "id": ["1", "2", "3"]}).save_to_disk(tmp_path / "ds")
    spec = CorpusSpec(str(tmp_path / "ds"))
    assert resolve_format(spec) == "disk"
    assert list(read_corpus(spec)) == [Document("1", "un"), Document("2", "deux")]  # "un" again is a duplicate
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["t"]}), "test": datasets.Dataset.from_dict({"text": ["u"]})}
    ).save_to_disk(tmp_path / "dd")
    assert _texts(CorpusSpec(str(tmp_path / "dd"), dataset_split="test")) == ["u"]
    with pytest.raises(LongAdaptError, match="no split 'dev'"):
        list(read_corpus(CorpusSpec(str(tmp_path / "dd"), dataset_split="dev")))


def test_hub_code_path_with_a_packaged_builder(tmp_path):
    # format="hub" goes through datasets.load_dataset; the packaged "json" builder needs no network
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "alpha"}\n{"text": "beta"}\n', encoding="utf-8")
    spec = CorpusSpec("json", format="hub", data_files=str(path))
    assert _texts(spec) == ["alpha", "beta"]


def test_dedup_exact_after_cleaning(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [{"text": "Même texte"}, {"text": "Même   texte  "}, {"text": "Autre"}, {"text": "Même texte"}]
    path.write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    assert _texts(CorpusSpec(str(path))) == ["Même texte", "Autre"]
    assert _texts(CorpusSpec(str(path), deduplicate=False)) == ["Même texte", "Même texte", "Autre", "Même texte"]


# ---------------------------------------------------------------------------------------------
# the real bundle
# ---------------------------------------------------------------------------------------------


def test_real_french_and_spanish_corpora(shared_data):
    fr = list(read_corpus(CorpusSpec(str(shared_data / "corpora" / "fr.jsonl.gz")), language="fr"))
    assert len(fr) == 2299
    assert sum(len(d.text.split()) for d in fr) == pytest.approx(4_000_623, rel=0.001)
    assert all(d.text == unicodedata.normalize("NFC", d.text) for d in fr[:200])
    assert len({d.id for d in fr}) == len(fr)
    es = list(read_corpus(CorpusSpec(str(shared_data / "corpora" / "es.jsonl.gz")), language="es"))
    assert 1300 <= len(es) <= 1338  # exact duplicates, if any, are dropped
    assert any("\n" in d.text for d in es)


def test_real_cantemist_brat_folder(shared_data):
    folder = shared_data / "tasks" / "es" / "cantemist" / "dev-set1" / "cantemist-ner"
    spec = CorpusSpec(str(folder))
    assert resolve_format(spec) == "brat"
    docs = list(read_corpus(spec, language="es"))
    assert 240 <= len(docs) <= 250
    assert all(d.id.startswith("cc_onco") for d in docs)
    first = sorted(folder.glob("*.txt"))[0]
    expected = clean_text(first.read_text(encoding="utf-8"))
    assert next(d for d in docs if d.id == first.stem).text == expected


# ---------------------------------------------------------------------------------------------
# errors a user can cause
# ---------------------------------------------------------------------------------------------


def test_missing_path():
    with pytest.raises(LongAdaptError, match=r"/no/such/corpus\.jsonl does not exist"):
        list(read_corpus(CorpusSpec("/no/such/corpus.jsonl")))
    with pytest.raises(LongAdaptError, match="matches no file"):
        list(read_corpus(CorpusSpec("/no/such/dir/*.jsonl")))


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"empty\.jsonl holds no documents"):
        list(read_corpus(CorpusSpec(str(empty))))
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "   "}\n{"text": "\\n\\t"}\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match="2 record.*empty after cleaning"):
        list(read_corpus(CorpusSpec(str(blank))))
    (tmp_path / "d").mkdir()
    with pytest.raises(LongAdaptError, match="holds no"):
        list(read_corpus(CorpusSpec(str(tmp_path / "d"))))


def test_not_utf8_text_names_file_byte_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("ligne un\nfi\u00e8vre\n".encode("latin-1"))
    with pytest.raises(LongAdaptError) as err:
        list(read_corpus(CorpusSpec(str(path))))
    msg = str(err.value)
    assert "latin1.txt" in msg and "byte 11" in msg and "line 2" in msg and "iconv" in msg


def test_not_utf8_jsonl_names_file_byte_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "fi\xe8vre"}\n')
    with pytest.raises(LongAdaptError, match=r"c\.jsonl: not valid utf-8 at byte 27.*line 2"):
        list(read_corpus(CorpusSpec(str(path))))
    # the encoding option is the documented fix
    assert _texts(CorpusSpec(str(path), encoding="latin-1")) == ["ok", "fièvre"]


def test_the_cheap_corpus_check_finds_what_reading_would_before_any_model_loads(tmp_path, monkeypatch):
    from longadapt.data.corpus import check_corpus

    text = tmp_path / "notes"
    text.mkdir()
    (text / "a.txt").write_bytes(b"Le patient pr\xe9sente une fi\xe8vre.\n")  # Windows-1252 / Latin-1
    with pytest.raises(LongAdaptError, match=r"a\.txt: not valid utf-8 at byte 13.*line 1.*corpus\.encoding=cp1252"):
        check_corpus(CorpusSpec(str(text)))
    check_corpus(CorpusSpec(str(text), encoding="cp1252"))
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"body": "texte"}\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"c\.jsonl, line 1: .*'text'"):
        check_corpus(CorpusSpec(str(jl)))
    # adapt runs it before the base model is built
    from longadapt.recipes import adapt
    from longadapt.recipes.files import load_recipe

    def never(*args, **kwargs):
        raise AssertionError("the base model was built before the corpus was checked")

    recipe = adapt.recipe_from_dict({**load_recipe("convert", "fr", "tiny")[0], "corpus": {"path": str(text)},
                                     "out": str(tmp_path / "out")})
    monkeypatch.setattr(adapt, "get_strategy", lambda *a: type("S", (), {"build": staticmethod(never)})())
    with pytest.raises(LongAdaptError, match=r"a\.txt: not valid utf-8"):
        adapt.run_recipe(recipe)


def test_json_line_without_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b", "id": 2}\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"c\.jsonl, line 2: no field 'text' \(keys: body, id\)"):
        list(read_corpus(CorpusSpec(str(path))))


def test_invalid_json_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b",\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"c\.jsonl, line 3: invalid JSON"):
        list(read_corpus(CorpusSpec(str(path))))


def test_bad_options():
    with pytest.raises(LongAdaptError, match="format 'csv'"):
        CorpusSpec("x", format="csv")
    with pytest.raises(LongAdaptError, match="text_documents"):
        CorpusSpec("x", text_documents="paragraph")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match="set format"):
        list(read_corpus(CorpusSpec(str(path))))


def test_iter_texts_reads_the_files_as_stored_through_the_pipeline_reader(tmp_path):
    """The vocabulary analysis and the tokenizer trainer read corpora with iter_texts: the pipeline's
    reader with no cleaning (a .txt file is one document per line), while read_corpus cleans."""
    from longadapt.data.corpus import iter_texts

    nfd = unicodedata.normalize("NFD", "fièvre  à 39 °C")
    (tmp_path / "a.txt").write_bytes(f"{nfd}\r\n\r\n  HTA  \r\nfin".encode())
    assert list(iter_texts(tmp_path / "a.txt")) == [nfd, "  HTA  ", "fin"]
    assert list(iter_texts(tmp_path / "a.txt", max_documents=2)) == [nfd, "  HTA  "]
    lines = CorpusSpec(str(tmp_path / "a.txt"), text_documents="line")
    assert [(d.id, d.text) for d in read_corpus(lines)] == [("a:1", "fièvre à 39 °C"), ("a:3", "HTA"), ("a:4", "fin")]
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": nfd}) + "\n" + json.dumps({"text": nfd}) + "\n")
    assert list(iter_texts(tmp_path / "c.jsonl")) == [nfd, nfd]  # neither normalised nor de-duplicated
    assert _texts(CorpusSpec(str(tmp_path / "c.jsonl"))) == ["fièvre à 39 °C"]
    assert list(iter_texts(["un", "  ", "deux"])) == ["un", "deux"]
    with pytest.raises(LongAdaptError, match="nope.jsonl does not exist"):
        list(iter_texts(tmp_path / "nope.jsonl"))
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(LongAdaptError, match=r"d.jsonl, line 2: no field 'text'"):
        list(iter_texts(tmp_path / "d.jsonl"))
