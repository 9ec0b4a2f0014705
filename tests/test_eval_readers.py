"""Readers on the real task data (counts from ../shared/data/README.md) and on broken inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from longadapt.errors import LongAdaptError
from longadapt.evaluation import readers as R
from longadapt.evaluation import entities as E
from longadapt.evaluation.data import document_words, tags_to_spans

E3C = [("fr", "French"), ("es", "Spanish"), ("en", "English")]

# README: layer1 train docs/words/CLINENTITY, layer1 test docs/words/CLINENTITY, layer2 docs/words/CLINENTITY
XMI_COUNTS = {
    "fr": ((36, 11097, 596), (45, 13382, 731), (168, 50759, 2033)),
    "es": ((36, 10287, 525), (45, 14696, 820), (162, 49949, 2625)),
    "en": ((36, 10785, 463), (48, 14428, 561), (171, 50566, 2140)),
}
# README: sentences / tokens / entities of train.txt, test.txt, layer2 text.txt
IOB_COUNTS = {
    "fr": ((504, 13238, 569), (605, 16018, 695), (2389, 58523, 2033)),
    "es": ((455, 11750, 509), (679, 17065, 800), (2347, 57875, 2625)),
    "en": ((669, 12657, 437), (851, 16702, 516), (2873, 59006, 2140)),
}


def _counts(docs):
    return len(docs), sum(d.n_words for d in docs), sum(len(d.entities) for d in docs)


@pytest.mark.parametrize("lang,name", E3C)
def test_e3c_xmi_counts(shared_data: Path, lang: str, name: str) -> None:
    root = shared_data / "tasks" / lang / "e3c"
    train_ids = set(R.read_id_list(root / "documentation" / "train_test_split.txt", name.upper()))
    assert len(train_ids) == 36
    layer1 = R.read_xmi(root / "data_annotation" / name / "layer1", labels=["CLINENTITY"])
    layer2 = R.read_xmi(root / "data_annotation" / name / "layer2", labels=["CLINENTITY"])
    train = [d for d in layer1 if d.id in train_ids]
    test = [d for d in layer1 if d.id not in train_ids]
    assert (_counts(train), _counts(test), _counts(layer2)) == XMI_COUNTS[lang]
    for doc in layer1 + layer2:
        for ent in doc.entities:
            assert doc.text[ent.start : ent.end] == ent.text and ent.text.strip()


def test_e3c_xmi_details(shared_data: Path) -> None:
    doc = R.read_xmi(shared_data / "tasks/fr/e3c/data_annotation/French/layer1/FR100003.xml")[0]
    assert doc.id == "FR100003" and len(doc.text) == 2459
    assert doc.text.startswith("Nous rapportons l'observation")
    first = doc.entities[0]
    assert (first.start, first.end, first.label) == (115, 144, "CLINENTITY")
    assert first.text == "diabète non-insulinodépendant"
    assert first.attributes["entityID"] == "C0011860"
    (seq,), units, counts = document_words(doc, "regex", "fragments")
    assert counts == {"annotations": len(doc.entities), "discontinuous": 0, "duplicates": 0, "trimmed": 0}
    assert (115, 144, "CLINENTITY") in units
    scheme = E.FlattenScheme(["CLINENTITY"])
    words = E.Words(seq.offsets)
    tags = scheme.tags(scheme.encode(E.to_word_mentions(units, words), len(words)))
    i = seq.words.index("diabète")
    assert tags[i : i + 4] == ["B-CLINENTITY", "I-CLINENTITY", "I-CLINENTITY", "I-CLINENTITY"]  # non - insulino...
    assert seq.words[i : i + 4] == ["diabète", "non", "-", "insulinodépendant"]
    assert words.char_span(i, i + 4) == (115, 144)


@pytest.mark.parametrize("lang,name", E3C)
def test_e3c_iob_counts(shared_data: Path, lang: str, name: str) -> None:
    base = shared_data / "tasks" / lang / "e3c" / "preprocessed_data" / "clinical_entities"
    files = [base / "layer1" / name / "train.txt", base / "layer1" / name / "test.txt", base / "layer2" / name / "text.txt"]
    got = []
    for f in files:
        sents = R.read_iob(f, labels=["ety"])
        got.append((len(sents), sum(s.n_words for s in sents), sum(len(tags_to_spans(s.tags)) for s in sents)))
    assert tuple(got) == IOB_COUNTS[lang]


CANTEMIST = {"train-set": (501, 382229, 6396), "dev-set1": (250, 189357, 3341),
             "dev-set2": (250, 151680, 2660), "test-set": (300, 206271, 3633)}


@pytest.mark.parametrize("split", sorted(CANTEMIST))
def test_cantemist_brat_counts(shared_data: Path, split: str) -> None:
    docs = R.read_brat(shared_data / "tasks/es/cantemist" / split / "cantemist-ner", labels=["MORFOLOGIA_NEOPLASIA"])
    assert _counts(docs) == CANTEMIST[split]
    # overlapping mentions exist: flattening loses some, the layers scheme represents all but a few
    # (a mention boundary inside a word)
    docs_words = [(document_words(d, "regex", "fragments")[1], E.Words(document_words(d, "regex", "fragments")[0][0].offsets))
                  for d in docs[:60]]
    assert E.overlapping(docs_words) > 0
    layers = E.build_scheme("layers", ["MORFOLOGIA_NEOPLASIA"], docs_words)
    flat = E.FlattenScheme(["MORFOLOGIA_NEOPLASIA"])
    n = sum(len(u) for u, _ in docs_words)
    rep_layers = sum(len(E.representable(layers, u, w)[0]) for u, w in docs_words)
    rep_flat = sum(len(E.representable(flat, u, w)[0]) for u, w in docs_words)
    assert rep_flat < rep_layers and rep_layers >= n - 3


CODIESP = {"train": (500, 174509), "dev": (250, 88074), "test": (250, 88178)}


@pytest.mark.parametrize("split", sorted(CODIESP))
def test_codiesp_counts(shared_data: Path, split: str) -> None:
    docs = R.read_codiesp(shared_data / "tasks/es/codiesp" / split, labels=R.ICD10_CHAPTER_NAMES)
    assert (len(docs), sum(d.n_words for d in docs)) == CODIESP[split]
    assert all(d.labels for d in docs)
    codes = R.read_codiesp(shared_data / "tasks/es/codiesp" / split, label_mode="code")
    distinct = {c for d in codes for c in d.labels}
    assert len(distinct) == {"train": 1767, "dev": 1158, "test": 1143}[split]


def test_icd10_chapters() -> None:
    assert R.icd10_chapter("n44.8") == "N00-N99"
    assert R.icd10_chapter("d3a.8") == "C00-D49"  # neuroendocrine tumours sort before D50
    assert R.icd10_chapter("d50.9") == "D50-D89"
    assert R.icd10_chapter("h60.1") == "H60-H95"
    assert R.icd10_chapter("t88.7") == "S00-T88"
    assert R.icd10_chapter("z3a.40") == "Z00-Z99"
    assert R.icd10_chapter("O9A.2") == "O00-O9A"
    with pytest.raises(ValueError):
        R.icd10_chapter("bw03zzz")


MORFITT = {"train": (1514, 343897, 2110), "dev": (1022, 230242, 1446), "test": (1088, 246069, 1560)}
SPECIALTIES = ["chemistry", "etiology", "genetics", "immunology", "microbiology", "parasitology",
               "pharmacology", "physiology", "psychology", "surgery", "veterinary", "virology"]


@pytest.mark.parametrize("split", sorted(MORFITT))
def test_morfitt_counts(shared_data: Path, split: str) -> None:
    ex = R.read_tsv(shared_data / "tasks/fr/morfitt" / f"{split}.tsv", text_column="abstract",
                    label_column="specialities", id_column="identifier", labels=SPECIALTIES)
    assert (len(ex), sum(e.n_words for e in ex), sum(len(e.labels) for e in ex)) == MORFITT[split]


MCQA = {"train": (2171, 98257, 595), "dev": (312, 13086, 164), "test": (622, 27757, 321)}


@pytest.mark.parametrize("split", sorted(MCQA))
def test_frenchmedmcqa_counts(shared_data: Path, split: str) -> None:
    items = R.read_mcqa_json(shared_data / "tasks/fr/frenchmedmcqa/corpus" / f"{split}.json", labels=list("abcde"))
    assert (len(items), sum(i.n_words for i in items), sum(len(i.answers) == 1 for i in items)) == MCQA[split]
    if split == "train":
        assert len({i.id for i in items}) == 2170


# ---------------------------------------------------------------------------------------------
# broken inputs
# ---------------------------------------------------------------------------------------------


def _brat(tmp_path: Path, text: str, ann: str) -> Path:
    (tmp_path / "doc1.txt").write_text(text, encoding="utf-8")
    (tmp_path / "doc1.ann").write_text(ann, encoding="utf-8")
    return tmp_path


def test_brat_offset_outside_text(tmp_path: Path) -> None:
    _brat(tmp_path, "Fièvre et toux.", "T1\tSYMPTOM 0 6\tFièvre\nT2\tSYMPTOM 10 40\ttoux\n")
    with pytest.raises(LongAdaptError, match=r"doc1\.ann:2: T2: offsets 10-40 outside the text \(length 15\)"):
        R.read_brat(tmp_path, labels=["SYMPTOM"])


def test_brat_span_text_mismatch(tmp_path: Path) -> None:
    _brat(tmp_path, "Fièvre et toux.", "T1\tSYMPTOM 0 6\tFièvre\nT2\tSYMPTOM 10 14\ttoxu\n")
    with pytest.raises(LongAdaptError, match=r"doc1\.ann:2: T2: span text 'toxu' does not match .*'toux'"):
        R.read_brat(tmp_path, labels=["SYMPTOM"])


def test_brat_unknown_label(tmp_path: Path) -> None:
    _brat(tmp_path, "Fièvre et toux.", "T1\tSYMPTOM 0 6\tFièvre\n#1\tAnnotatorNotes T1\tnote\nT2\tSYMPTON 10 14\ttoux\n")
    with pytest.raises(LongAdaptError, match=r"doc1\.ann:3: unknown label 'SYMPTON'; the task's labels are: SYMPTOM"):
        R.read_brat(tmp_path, labels=["SYMPTOM"])


def test_brat_discontinuous_fragments_are_kept(tmp_path: Path) -> None:
    text = "douleur thoracique et abdominale"
    ann = ("T1\tSYMPTOM 0 18\tdouleur thoracique\n"
           "T2\tSYMPTOM 0 7;22 32\tdouleur abdominale\n"
           "T3\tORGAN 8 18\tthoracique\n"
           "R1\tRel Arg1:T1 Arg2:T3\n")
    doc = R.read_brat(_brat(tmp_path, text, ann))[0]
    t2 = doc.entities[1]
    assert (t2.start, t2.end, t2.fragments, t2.text) == (0, 32, ((0, 7), (22, 32)), "douleur abdominale")
    assert [e.label for e in doc.entities] == ["SYMPTOM", "SYMPTOM", "ORGAN"]  # relations are not read


MANTRA_NOTES = {"Manufactured Object": "OBJC", "OBJC|CHEM": "OBJC"}  # a semantic type, two groups: the first


def test_brat_label_from_note(tmp_path: Path) -> None:
    """Mantra GSC: the BRAT type is a CUI, the label the last quoted field of the mention's AnnotatorNotes."""
    text = "PROTELOS et le sodium dans la machine"
    ann = ('T1\tC1721214 0 8\tPROTELOS\n'
           '#1\tAnnotatorNotes T1\t"C1721214", "protelos", "Organic Chemical" ,"CHEM"\n'
           'T2\tC0037570 15 21\tsodium\n'
           '#2\tAnnotatorNotes T2\t"C0037570", "Sodium, Dietary", "Food|Inorganic Chemical" ,"OBJC|CHEM"\n'
           'T3\tC0336779 30 37\tmachine\n'
           '#3\tAnnotatorNotes T3\t"C0336779", "Machine", "OBJC" ,"Manufactured Object"\n')
    _brat(tmp_path, text, ann)
    labels = ["CHEM", "OBJC"]
    doc = R.read("brat", tmp_path, {"label_from": "note", "label_map": MANTRA_NOTES}, labels)[0]
    assert [(e.text, e.label) for e in doc.entities] == [("PROTELOS", "CHEM"), ("sodium", "OBJC"), ("machine", "OBJC")]
    assert doc.entities[0].attributes == {"brat_type": "C1721214"}  # the CUI is kept
    assert doc.meta["mapped_labels"] == {"OBJC|CHEM -> OBJC": 1, "Manufactured Object -> OBJC": 1}
    # without the map, a quirk is an unknown label (never dropped silently), and the message names the map
    with pytest.raises(LongAdaptError, match=r"doc1\.ann:3: unknown label 'OBJC\|CHEM'.*reader_options\.label_map"):
        R.read_brat(tmp_path, labels=labels, label_from="note")
    ignored = R.read_brat(tmp_path, labels=labels, label_from="note", other_labels="ignore")[0]
    assert len(ignored.entities) == 1 and ignored.meta["ignored_labels"] == {"OBJC|CHEM": 1, "Manufactured Object": 1}
    # label_from: type (the default) reads the CUIs
    assert [e.label for e in R.read_brat(tmp_path)[0].entities] == ["C1721214", "C0037570", "C0336779"]


@pytest.mark.parametrize(
    "ann,message",
    [
        ('T1\tC1 0 8\tPROTELOS\nT2\tC2 15 21\tsodium\n#2\tAnnotatorNotes T2\t"C2", "CHEM"\n',
         r"doc1\.ann:1: T1 has no AnnotatorNotes line .*AnnotatorNotes T1.*label_from: type"),
        ('T1\tC1 0 8\tPROTELOS\n#1\tAnnotatorNotes T1\tCHEM\n',
         r"doc1\.ann:2: the AnnotatorNotes of T1 is not a comma-separated list of quoted fields ending in a label: 'CHEM'"),
        ('T1\tC1 0 8\tPROTELOS\n#1\tAnnotatorNotes T1\t"C1", ""\n', r"doc1\.ann:2: the AnnotatorNotes of T1 is not"),
        ('T1\tC1 0 8\tPROTELOS\n#1\tAnnotatorNotes T1\t"C1", "CHEM"\n#2\tAnnotatorNotes T1\t"C1", "CHEM"\n',
         r"doc1\.ann:3: a second AnnotatorNotes for T1 \(the first is on line 2\)"),
    ],
)
def test_brat_label_from_note_errors(tmp_path: Path, ann: str, message: str) -> None:
    _brat(tmp_path, "PROTELOS et le sodium", ann)
    with pytest.raises(LongAdaptError, match=message):
        R.read_brat(tmp_path, labels=["CHEM"], label_from="note")


def test_brat_label_options_are_checked(tmp_path: Path) -> None:
    _brat(tmp_path, "PROTELOS", "T1\tCHEM 0 8\tPROTELOS\n")
    with pytest.raises(LongAdaptError, match=r"label_from must be one of type, note, not 'notes'"):
        R.read("brat", tmp_path, {"label_from": "notes"})
    with pytest.raises(LongAdaptError, match=r"label_map must map labels as read to task labels"):
        R.read("brat", tmp_path, {"label_map": {"CHEM": 3}})
    # label_map also renames BRAT types
    assert R.read("brat", tmp_path, {"label_map": {"CHEM": "DRUG"}}, ["DRUG"])[0].entities[0].label == "DRUG"


# README: units / words / mentions (T lines; a discontinuous mention is one) / discontinuous, per subcorpus
MANTRA = {
    ("fr", "EMEA"): (100, 2122, 431, 10), ("fr", "Medline_EN_FR"): (100, 1002, 279, 1),
    ("fr", "Patents"): (50, 2410, 342, 3), ("de", "EMEA"): (100, 1701, 425, 11),
    ("de", "Medline_EN_DE"): (100, 782, 309, 7), ("de", "Patents"): (50, 1982, 348, 1),
    ("es", "EMEA"): (100, 1984, 432, 13), ("es", "Medline_EN_ES"): (100, 1087, 324, 6),
}
MANTRA_GROUPS = ["ANAT", "CHEM", "DEVI", "DISO", "GEOG", "LIVB", "OBJC", "PHEN", "PHYS", "PROC"]
MANTRA_QUIRKS = {"Manufactured Object": "OBJC", "Research Device": "DEVI", "Research Activity": "PROC",
                 "Mental or Behavioral Dysfunction": "DISO", "Amino Acid, Peptide, or Protein|Enzyme|Receptor": "CHEM",
                 "OBJC|CHEM": "OBJC", "CHEM|PHEN": "CHEM"}


@pytest.mark.parametrize("lang,sub", list(MANTRA))
def test_mantra_gsc_counts(shared_data: Path, lang: str, sub: str) -> None:
    folder = {"fr": "French", "de": "German", "es": "Spanish"}[lang]
    docs = R.read_brat(shared_data / "tasks" / lang / "mantra-gsc" / folder / f"{sub}_ec22-cui-best_man",
                       labels=MANTRA_GROUPS, label_from="note", label_map=MANTRA_QUIRKS)
    entities = [e for d in docs for e in d.entities]
    assert (len(docs), sum(d.n_words for d in docs), len(entities), sum(e.fragments is not None for e in entities)) == \
        MANTRA[(lang, sub)]
    assert all(e.attributes["brat_type"].startswith("C") for e in entities)  # the type field is the CUI


def test_brat_missing_ann(tmp_path: Path) -> None:
    _brat(tmp_path, "a", "")
    (tmp_path / "doc2.txt").write_text("b", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"doc2\.txt: has no \.ann file.*ids_mode: exclude"):
        R.read_brat(tmp_path)
    # a document outside the selection may lack its .ann: ids are applied before files are read
    assert [d.id for d in R.read_brat(tmp_path, select=R.IdSelection(["doc2"], "exclude", "ids.txt"))] == ["doc1"]
    with pytest.raises(LongAdaptError, match=r"ids\.txt: 1 of its 2 ids match no document in .*: doc9"):
        R.read_brat(tmp_path, select=R.IdSelection(["doc1", "doc9"], "include", "ids.txt"))


def test_xmi_offset_outside_text(tmp_path: Path) -> None:
    xmi = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<xmi:XMI xmlns:xmi="http://www.omg.org/XMI" xmlns:cas="http:///uima/cas.ecore" '
           'xmlns:custom="http:///webanno/custom.ecore" xmi:version="2.0">\n'
           '<cas:Sofa xmi:id="1" sofaNum="1" sofaID="_InitialView" mimeType="text" sofaString="Une toux sèche."/>\n'
           '<custom:CLINENTITY xmi:id="2" sofa="1" begin="4" end="8"/>\n'
           '<custom:CLINENTITY xmi:id="3" sofa="1" begin="9" end="99"/>\n'
           '</xmi:XMI>\n')
    f = tmp_path / "X1.xml"
    f.write_text(xmi, encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"X1\.xml:5: CLINENTITY xmi:id=3: offsets 9-99 outside the text \(length 15 UTF-16 code units\)"):
        R.read_xmi(f)
    f.write_text(xmi.replace('end="99"', 'end="14"'), encoding="utf-8")
    doc = R.read_xmi(f)[0]
    assert [e.text for e in doc.entities] == ["toux", "sèche"]
    with pytest.raises(LongAdaptError, match=r"X1\.xml:4: unknown label 'CLINENTITY'"):
        R.read_xmi(f, labels=["DISEASE"])


def test_xmi_offsets_count_utf16_code_units(tmp_path: Path) -> None:
    """UIMA offsets are Java (UTF-16) offsets: an emoji before a mention counts 2, not 1."""
    sofa = "\U0001F600 Patient Hans Meier, 54 ans, \U0001D49C toux."
    xmi = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<xmi:XMI xmlns:xmi="http://www.omg.org/XMI" xmlns:cas="http:///uima/cas.ecore" '
           'xmlns:custom="http:///webanno/custom.ecore" xmi:version="2.0">\n'
           f'<cas:Sofa xmi:id="1" sofaNum="1" sofaID="_InitialView" mimeType="text" sofaString="{sofa}"/>\n'
           '<custom:CLINENTITY xmi:id="2" sofa="1" begin="11" end="21"/>\n'
           '<custom:CLINENTITY xmi:id="3" sofa="1" begin="34" end="38"/>\n'
           '</xmi:XMI>\n')
    f = tmp_path / "X2.xml"
    f.write_text(xmi, encoding="utf-8")
    doc = R.read_xmi(f)[0]
    assert [(e.start, e.end, e.text) for e in doc.entities] == [(10, 20, "Hans Meier"), (32, 36, "toux")]
    f.write_text(xmi.replace('begin="34"', 'begin="32"'), encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"X2\.xml:5: CLINENTITY xmi:id=3: an offset falls inside a character"):
        R.read_xmi(f)


def test_xmi_annotation_without_its_label_stops_or_is_skipped_and_counted(tmp_path: Path) -> None:
    xmi = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<xmi:XMI xmlns:xmi="http://www.omg.org/XMI" xmlns:cas="http:///uima/cas.ecore" '
           'xmlns:custom="http:///webanno/custom.ecore" xmi:version="2.0">\n'
           '<cas:Sofa xmi:id="1" sofaNum="1" sofaID="_InitialView" mimeType="text" sofaString="Une toux sèche."/>\n'
           '<custom:CLINENTITY xmi:id="2" sofa="1" begin="4" end="8" entityID="SYMPTOM"/>\n'
           '<custom:CLINENTITY xmi:id="3" sofa="1" begin="9" end="14"/>\n'
           '</xmi:XMI>\n')
    f = tmp_path / "X3.xml"
    f.write_text(xmi, encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"X3\.xml:5: CLINENTITY xmi:id=3 has no attribute 'entityID'.*"
                                             r"reader_options\.unlabelled: skip"):
        R.read_xmi(f, label_attribute="entityID")
    doc = R.read_xmi(f, label_attribute="entityID", unlabelled="skip")[0]
    assert [(e.text, e.label) for e in doc.entities] == [("toux", "SYMPTOM")] and doc.meta["unlabelled"] == 1
    with pytest.raises(LongAdaptError, match="unlabelled must be one of error, skip, not 'drop'"):
        R.read_xmi(f, label_attribute="entityID", unlabelled="drop")
    # through a task: counted per split, in the split's statistics (run.json data.<split>.split.unlabelled_skipped)
    for split in ("train", "dev", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"{split}1.xml").write_text(xmi, encoding="utf-8")
    task_file = tmp_path / "t.yaml"
    task_file.write_text("name: t\ntype: ner\nreader: xmi\nreader_options: {label_attribute: entityID, "
                         "unlabelled: skip}\nlabels: [SYMPTOM]\nsplits: {train: train, dev: dev, test: test}\n"
                         "data_root: .\n", encoding="utf-8")
    from longadapt.evaluation.tasks import load_task

    data = load_task(task_file).load_data()
    assert [data.stats[s].unlabelled for s in ("train", "dev", "test")] == [1, 1, 1]


def test_iob_errors(tmp_path: Path) -> None:
    f = tmp_path / "train.txt"
    f.write_text("Une O\ntoux B-ety\n\nfièvre B-ety\nhaute I-sym\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"train\.txt:5: unknown label 'sym'"):
        R.read_iob(f, labels=["ety"])
    f.write_text("Une O\ntoux\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"train\.txt:2: expected 'token tag' columns"):
        R.read_iob(f)
    f.write_text("Une O\ntoux X-ety\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"train\.txt:2: tag 'X-ety' is not O"):
        R.read_iob(f)


def test_tsv_and_mcqa_errors(tmp_path: Path) -> None:
    f = tmp_path / "d.tsv"
    f.write_text('id\ttext\tlabel\n1\t"a ""quoted""\ttext"\tA|B\n2\tplain\tC\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"d\.tsv:3: unknown label 'C'"):
        R.read_tsv(f, id_column="id", labels=["A", "B"])
    f.write_text('id\ttext\tlabel\n1\t"a ""quoted""\ttext"\tA|B\n', encoding="utf-8")
    ex = R.read_tsv(f, id_column="id", labels=["A", "B"])
    assert ex[0].text == 'a "quoted"\ttext' and ex[0].labels == ["A", "B"]
    with pytest.raises(LongAdaptError, match=r"no column 'labels' for label_column; the columns are: id, text, label"):
        R.read_tsv(f, label_column="labels")
    j = tmp_path / "q.json"
    j.write_text('[\n {"id": "1", "question": "q", "answers": {"a": "x", "b": "y"}, "correct_answers": ["a"]},\n'
                 ' {"id": "2", "question": "q", "answers": {"a": "x", "b": "y"}, "correct_answers": ["c"]}\n]\n',
                 encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"q\.json:3: question 2: correct answer 'c' is not an option"):
        R.read_mcqa_json(j)


def test_reader_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(LongAdaptError, match=r"unknown option\(s\) text_col for reader 'tsv'"):
        R.read("tsv", tmp_path / "x.tsv", {"text_col": "abstract"})
    with pytest.raises(LongAdaptError, match=r"unknown reader 'csv'"):
        R.read("csv", tmp_path)


def test_brat_subfolders_and_ids_written_as_file_names(tmp_path: Path) -> None:
    for part, name in (("part1", "a"), ("part2", "b")):
        (tmp_path / part).mkdir()
        (tmp_path / part / f"{name}.txt").write_text("Fièvre.", encoding="utf-8")
        (tmp_path / part / f"{name}.ann").write_text("T1\tSYMPTOM 0 6\tFièvre\n", encoding="utf-8")
    assert [d.id for d in R.read_brat(tmp_path)] == ["a", "b"]  # no file at the top: the subfolders are read
    assert [d.id for d in R.read_brat(tmp_path, select=R.IdSelection(["b.txt"], "include", "ids"))] == ["b"]
    (tmp_path / "part2" / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"two documents are named 'a'"):
        R.read_brat(tmp_path)
