"""Every gold mention is scored: hand-built BRAT and XMI documents with nested (different and same
type), overlapping, duplicate and discontinuous mentions; exact gold counts, what each scheme can
represent, exact P/R/F1 against the full gold set; flat data agrees with seqeval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import readers as R
from longadapt.evaluation.data import document_words
from longadapt.evaluation.metrics import ner_scores
from longadapt.evaluation.tasks import load_task

# words:  0 douleurs | 1 intenses | 2 , | 3 chroniques | 4 du | 5 myocarde | 6 .
TEXT = "douleurs intenses , chroniques du myocarde .\n"
ANN = (
    "T1\tDISO 0 17\tdouleurs intenses\n"          # holds T2 (same type)
    "#1\tAnnotatorNotes T1\tC0278140\n"
    "T2\tDISO 0 8\tdouleurs\n"
    "T3\tDISO 0 8;20 30\tdouleurs chroniques\n"   # discontinuous; its first fragment equals T2
    "T4\tANAT 34 42\tmyocarde\n"                  # inside T5 (another type)
    "T5\tDISO 20 42\tchroniques du myocarde\n"
    "T6\tPROC 9 30\tintenses , chroniques\n"      # crosses T1 and T5
    "T7\tDISO 0 8\tdouleurs\n"                    # the same span and type again (another CUI)
)
D, A, P = "DISO", "ANAT", "PROC"
GOLD_FRAGMENTS = {(0, 17, D), (0, 8, D), (20, 30, D), (34, 42, A), (20, 42, D), (9, 30, P)}


def _doc(tmp_path: Path, name: str = "doc", text: str = TEXT, ann: str = ANN, folder: str = "") -> Path:
    d = tmp_path / folder if folder else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    (d / f"{name}.ann").write_text(ann, encoding="utf-8")
    return d


def _units(tmp_path: Path, mode: str):
    doc = R.read_brat(_doc(tmp_path), labels=[A, D, P])[0]
    (seq,), units, counts = document_words(doc, "regex", mode)
    return units, counts, E.Words(seq.offsets)


@pytest.mark.parametrize("mode,expected,duplicates", [
    ("fragments", GOLD_FRAGMENTS, 2),  # T7 and T3's first fragment repeat T2
    ("extent", GOLD_FRAGMENTS - {(20, 30, D)} | {(0, 30, D)}, 1),
    ("longest", GOLD_FRAGMENTS, 1),  # T3's longest fragment is "chroniques" (10 > 8 characters)
])
def test_gold_mentions_per_discontinuous_mode(tmp_path: Path, mode: str, expected: set, duplicates: int) -> None:
    units, counts, _ = _units(tmp_path, mode)
    assert set(units) == expected and len(units) == len(expected)
    assert counts == {"annotations": 7, "discontinuous": 1, "duplicates": duplicates, "trimmed": 0}


def _round_trip(scheme: E.Scheme, units, words) -> set:
    return E.decode_chars(scheme, scheme.encode(E.to_word_mentions(units, words), len(words)), words)


def test_layers_represent_every_mention(tmp_path: Path) -> None:
    units, _, words = _units(tmp_path, "fragments")
    scheme = E.build_scheme("layers", [A, D, P], [(units, words)])
    # DISO nests two deep ("douleurs" in "douleurs intenses"); every type gets two levels
    assert scheme.depth == {A: 2, D: 2, P: 2} and scheme.n_layers == 6 and scheme.n_classes == 3
    classes = scheme.encode(E.to_word_mentions(units, words), len(words))
    d0, d1 = scheme.layer_index[(D, 0)], scheme.layer_index[(D, 1)]
    assert classes[:, d0].tolist() == [1, 2, 0, 1, 2, 2, 0]  # douleurs intenses | chroniques du myocarde
    assert classes[:, d1].tolist() == [1, 0, 0, 1, 0, 0, 0]  # douleurs | chroniques
    assert classes[:, scheme.layer_index[(P, 0)]].tolist() == [0, 1, 2, 2, 0, 0, 0]
    assert _round_trip(scheme, units, words) == GOLD_FRAGMENTS
    rep, lost = E.representable(scheme, units, words)
    assert rep == GOLD_FRAGMENTS and lost == {}
    # capped at one level: the inner DISO mentions are lost, and said to be lost to nesting
    capped = E.build_scheme("layers", [A, D, P], [(units, words)], max_depth=1)
    rep, lost = E.representable(capped, units, words)
    assert rep == GOLD_FRAGMENTS - {(0, 8, D), (20, 30, D)}
    assert lost == {(0, 8, D): E.LOST_NESTING, (20, 30, D): E.LOST_NESTING}


def test_flatten_keeps_the_longest_span(tmp_path: Path) -> None:
    units, _, words = _units(tmp_path, "fragments")
    scheme = E.build_scheme("flatten", [A, D, P], [(units, words)])
    tags = scheme.tags(scheme.encode(E.to_word_mentions(units, words), len(words)))
    # "chroniques du myocarde" (22 characters) beats the crossing PROC (21); "douleurs intenses" survives
    assert tags == ["B-DISO", "I-DISO", "O", "B-DISO", "I-DISO", "I-DISO", "O"]
    assert _round_trip(scheme, units, words) == {(0, 17, D), (20, 42, D)}


def test_join_joins_the_types_of_each_word(tmp_path: Path) -> None:
    units, _, words = _units(tmp_path, "fragments")
    scheme = E.build_scheme("join", [A, D, P], [(units, words)])
    tags = scheme.tags(scheme.encode(E.to_word_mentions(units, words), len(words)))
    assert tags == ["B-DISO", "B-DISO+PROC", "B-PROC", "B-DISO+PROC", "B-DISO", "B-ANAT+DISO", "O"]
    # different types come back; same-type nesting does not
    assert _round_trip(scheme, units, words) == GOLD_FRAGMENTS - {(0, 8, D), (20, 30, D)}
    with pytest.raises(LongAdaptError, match=r"joins types with '\+'.*a\+b"):
        E.build_scheme("join", ["a+b"], [])


@pytest.mark.parametrize("name,precision,recall,f1", [
    ("layers", 1.0, 1.0, 1.0),
    ("flatten", 1.0, 2 / 6, 0.5),       # 2 of the 6 gold mentions survive flattening
    ("join", 1.0, 4 / 6, 0.8),          # 4 of 6
])
def test_full_gold_score_of_a_perfect_model_under_each_scheme(tmp_path: Path, name: str, precision: float,
                                                             recall: float, f1: float) -> None:
    """A model that predicts exactly what the scheme encodes still misses what the scheme cannot hold."""
    units, _, words = _units(tmp_path, "fragments")
    scheme = E.build_scheme(name, [A, D, P], [(units, words)])
    scores, table = E.mention_scores({"doc": set(units)}, {"doc": _round_trip(scheme, units, words)}, [A, D, P])
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((precision, recall, f1))
    assert table["total"]["gold"] == 6


def test_mention_scores_hand_checked() -> None:
    gold = {"doc": GOLD_FRAGMENTS}
    pred = {"doc": {(0, 17, D), (0, 8, A), (34, 42, A), (9, 20, P)}}  # 2 right, a wrong type, a wrong span
    scores, table = E.mention_scores(gold, pred, [A, D, P])
    assert scores["precision"] == pytest.approx(0.5) and scores["recall"] == pytest.approx(2 / 6)
    assert scores["f1"] == pytest.approx(0.4)
    per = table["per_type"]
    assert (per[D]["gold"], per[D]["predicted"], per[D]["correct"]) == (4, 1, 1)
    assert per[D]["f1"] == pytest.approx(0.4)  # P 1, R 0.25
    assert per[A]["f1"] == pytest.approx(2 / 3)  # P 0.5, R 1
    assert per[P]["f1"] == 0.0
    assert scores["macro_f1"] == pytest.approx((0.4 + 2 / 3 + 0.0) / 3)
    # a document with gold but no prediction counts all its gold as missed
    scores, _ = E.mention_scores({**gold, "other": {(0, 3, D)}}, pred, [A, D, P])
    assert scores["recall"] == pytest.approx(2 / 7)


XMI = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<xmi:XMI xmlns:xmi="http://www.omg.org/XMI" xmlns:cas="http:///uima/cas.ecore" '
       'xmlns:custom="http:///webanno/custom.ecore" xmi:version="2.0">\n'
       '<cas:Sofa xmi:id="1" sofaNum="1" sofaID="_InitialView" mimeType="text" '
       'sofaString="Une hépatite virale B du foie."/>\n'
       '<custom:ENT xmi:id="2" sofa="1" begin="4" end="21" kind="DIS"/>\n'
       '<custom:ENT xmi:id="3" sofa="1" begin="4" end="19" kind="DIS"/>\n'
       '<custom:ENT xmi:id="4" sofa="1" begin="4" end="12" kind="DIS"/>\n'
       '<custom:ENT xmi:id="5" sofa="1" begin="25" end="29" kind="BODY"/>\n'
       '</xmi:XMI>\n')


def test_xmi_same_type_nesting_three_deep_and_other_labels(tmp_path: Path) -> None:
    f = tmp_path / "X1.xml"
    f.write_text(XMI, encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"X1\.xml:7: unknown label 'BODY'.*other_labels: ignore"):
        R.read_xmi(f, annotation="custom:ENT", label_attribute="kind", labels=["DIS"])
    doc = R.read_xmi(f, annotation="custom:ENT", label_attribute="kind", labels=["DIS"], other_labels="ignore")[0]
    assert doc.meta["ignored_labels"] == {"BODY": 1} and len(doc.entities) == 3
    (seq,), units, _ = document_words(doc, "regex", "fragments")
    words = E.Words(seq.offsets)
    gold = {(4, 21, "DIS"), (4, 19, "DIS"), (4, 12, "DIS")}
    assert set(units) == gold
    expected = {"layers": gold, "flatten": {(4, 21, "DIS")}, "join": {(4, 21, "DIS")}}
    for name, rep in expected.items():
        scheme = E.build_scheme(name, ["DIS"], [(units, words)])
        assert E.representable(scheme, units, words)[0] == rep, name
    assert E.build_scheme("auto", ["DIS"], [(units, words)]).name == "layers"
    assert E.build_scheme("auto", ["DIS"], [([(4, 12, "DIS")], words)]).name == "flatten"  # nothing nests


def test_mention_boundaries_inside_a_word_are_counted_and_whitespace_trimmed(tmp_path: Path) -> None:
    text = "une hyperthermie et des frissons"
    ann = "T1\tDISO 9 16\tthermie\nT2\tDISO 19 32\t des frissons\n"
    doc = R.read_brat(_doc(tmp_path, "w", text, ann), labels=[D])[0]
    (seq,), units, counts = document_words(doc, "regex", "fragments")
    assert units == [(9, 16, D), (20, 32, D)] and counts["trimmed"] == 1  # " des frissons" starts on a space
    words = E.Words(seq.offsets)
    rep, lost = E.representable(E.build_scheme("layers", [D], [(units, words)]), units, words)
    assert rep == {(20, 32, D)} and lost == {(9, 16, D): E.LOST_WORD}


def test_seqeval_and_the_mention_scorer_agree_on_flat_data(shared_data: Path) -> None:
    task = load_task("fr-e3c-ner", data_root=shared_data)
    data = task.load_data()
    test = data["test"][:300]
    rng = np.random.default_rng(0)
    pred_tags = []
    for ex in test:  # a noisy prediction: gold tags with a fifth of the words replaced
        tags = list(ex.tags)
        for i in range(len(tags)):
            if rng.random() < 0.2:
                tags[i] = ["O", "B-ety", "I-ety"][rng.integers(3)]
        pred_tags.append(tags)
    scheme = data.scheme
    pred = {}
    for ex, tags in zip(test, pred_tags):
        cls = np.array([[scheme.tag_id[t]] for t in tags])
        pred[ex.doc_id] = E.decode_chars(scheme, cls, E.Words(ex.offsets))
    ours, _ = E.mention_scores({ex.doc_id: data.gold["test"][ex.doc_id] for ex in test}, pred, ["ety"])
    theirs = ner_scores([ex.tags for ex in test], pred_tags)
    assert 0.3 < theirs["f1"] < 0.9
    assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx(
        (theirs["precision"], theirs["recall"], theirs["f1"]), abs=1e-12)


def _task(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "task.yaml"
    f.write_text("name: t\nlanguage: fr\ntype: ner\nreader: brat\ndata_root: .\n" + body, encoding="utf-8")
    return f


def test_task_counts_and_coverage_per_split(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        _doc(tmp_path, f"{split}-doc", folder=split)
    yaml = _task(tmp_path, "labels: [ANAT, DISO, PROC]\nsplits: {train: train, dev: dev, test: test}\n")
    data = load_task(yaml).load_data()
    assert data.scheme.name == "layers"
    for split in ("train", "dev", "test"):
        st = data.stats[split]
        assert (st.documents, st.annotations, st.discontinuous, st.duplicates) == (1, 7, 1, 2)
        t = st.entities
        assert (t["total"]["gold"], t["total"]["representable"]) == (6, 6)
        assert {k: v["gold"] for k, v in t["per_type"].items()} == {A: 1, D: 4, P: 1}
    flat = load_task(yaml, overrides={"nested": "flatten"}).load_data()
    assert flat.stats["test"].entities["total"]["representable"] == 2
    assert flat.warnings and "2 of 6 gold mentions representable (33.33 %)" in flat.warnings[-1]


def test_label_subsets(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        _doc(tmp_path, f"{split}-doc", folder=split)
    yaml = _task(tmp_path, "labels: [ANAT, PROC]\nsplits: {train: train, dev: dev, test: test}\n")
    with pytest.raises(LongAdaptError, match=r"unknown label 'DISO'; the task's labels are: ANAT, PROC.*"
                                             r"other_labels: ignore"):
        load_task(yaml).load_data()
    data = load_task(yaml, overrides={"other_labels": "ignore"}).load_data()
    assert data.stats["test"].ignored_labels == {"DISO": 5}
    assert data.stats["test"].entities["total"]["gold"] == 2 and data.scheme.labels == [A, P]


def test_ids_are_applied_before_reading_and_checked(tmp_path: Path) -> None:
    root = tmp_path / "all"
    for name in ("a", "b", "c", "d"):
        _doc(root, name)
    (root / "broken.txt").write_text("no annotation file", encoding="utf-8")  # in no split: harmless
    (tmp_path / "dev.txt").write_text("c\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("d\n", encoding="utf-8")
    (tmp_path / "train.txt").write_text("a\nb\n", encoding="utf-8")
    body = ("labels: [ANAT, DISO, PROC]\nsplits:\n"
            "  train: {path: all, ids_file: train.txt}\n"
            "  dev: {path: all, ids_file: dev.txt}\n"
            "  test: {path: all, ids_file: test.txt}\n")
    data = load_task(_task(tmp_path, body)).load_data()
    assert [len(data[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    (tmp_path / "test.txt").write_text("d\nz9\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"splits\.test\[0\]: ids_file test\.txt: 1 of its 2 ids match no "
                                             r"document .*: z9"):
        load_task(_task(tmp_path, body)).load_data()
    (tmp_path / "test.txt").write_text("d\nb\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"1 document\(s\) are selected twice: b \(.*b\.txt\): train and test"):
        load_task(_task(tmp_path, body)).load_data()
    (tmp_path / "test.txt").write_text("broken\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"broken\.txt: has no \.ann file"):
        load_task(_task(tmp_path, body)).load_data()


def test_the_same_document_copied_into_two_splits_is_refused(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        _doc(tmp_path, "same" if split != "dev" else "other", folder=split,
             text=TEXT if split != "dev" else "autre texte .\n", ann="" if split == "dev" else ANN)
    yaml = _task(tmp_path, "labels: [ANAT, DISO, PROC]\nsplits: {train: train, dev: dev, test: test}\n")
    with pytest.raises(LongAdaptError, match=r"same: the same document \(name and text\) in train and test"):
        load_task(yaml).load_data()


# ---------------------------------------------------------------------------------------------
# the CLEF eHealth count (count: clef) beside the units count, on the same predictions
# ---------------------------------------------------------------------------------------------

# a: TEXT and ANN above: T3 is discontinuous (0 8;20 30), T7 repeats T2, T2 nests in T1, T4 in T5
# b: " organes" starts on the space before the word (QUAERO has such spans)
TEXT_B = "Atteinte des organes vitaux .\n"
ANN_B = "T1\tANAT 12 20\t organes\nT2\tDISO 0 8\tAtteinte\n"
# c: no gold mention
TEXT_C = "Rien .\n"
PRED = {
    "a": {(0, 17, D),    # T1: right
          (0, 8, D),     # T2 (and T7, the same line again): right once
          (20, 30, D),   # the second fragment of T3 alone
          (34, 42, A),   # T4: right
          (9, 20, P),    # partial: T6 is 9-30
          (20, 42, A)},  # T5's span with the wrong type
    "b": {(13, 20, A)},  # "organes": the trimmed span
    "c": {(0, 4, D)},
}


def _clef_task(tmp_path: Path, count: str = "clef") -> Path:
    for split in ("train", "dev"):
        _doc(tmp_path, f"{split}-a", folder=split)
    _doc(tmp_path, "a", folder="test")
    _doc(tmp_path, "b", TEXT_B, ANN_B, folder="test")
    _doc(tmp_path, "c", TEXT_C, "", folder="test")
    return _task(tmp_path, f"labels: [ANAT, DISO, PROC]\ncount: {count}\nsplits: {{train: train, dev: dev, test: test}}\n")


def test_units_and_clef_counts_hand_checked(tmp_path: Path) -> None:
    """The same predictions, counted two ways (hand-computed):

    units (gold a: the 6 units of GOLD_FRAGMENTS; b: 13-20 ANAT, 0-8 DISO; c: none)
      a: TP 0-17 D, 0-8 D, 20-30 D, 34-42 A = 4; FP 9-20 P, 20-42 A = 2; FN 20-42 D, 9-30 P = 2
      b: TP 13-20 A = 1; FN 0-8 D = 1;  c: FP 0-4 D = 1
      TP 5, FP 3, FN 3: P = 5/8, R = 5/8, F1 = 5/8
    clef (gold a: the 7 T lines; b: 12-20 ANAT as written, 0-8 DISO; c: none)
      a: TP T1, T2, T4 = 3; FN T3 (needs both fragments), T5, T6, T7 (its one prediction matched T2) = 4;
         FP 20-30 D (a lone fragment), 9-20 P, 20-42 A = 3
      b: TP 0; FN 12-20 A, 0-8 D = 2; FP 13-20 A (not 12-20) = 1;  c: FP 0-4 D = 1
      TP 3, FP 5, FN 6: P = 3/8, R = 3/9, F1 = 2 TP / (2 TP + FP + FN) = 6/17
    """
    data = load_task(_clef_task(tmp_path)).load_data()
    gold, clef_gold = data.gold["test"], data.clef_gold["test"]
    assert [len(clef_gold[d]) for d in "abc"] == [7, 2, 0] and [len(gold[d]) for d in "abc"] == [6, 2, 0]
    assert clef_gold["a"][2] == (((0, 8), (20, 30)), D) and clef_gold["b"][0] == (((12, 20),), A)

    units, table = E.mention_scores(gold, PRED, [A, D, P])
    t = table["total"]
    assert (t["gold"], t["predicted"], t["correct"]) == (8, 8, 5)
    assert (units["precision"], units["recall"], units["f1"]) == pytest.approx((5 / 8, 5 / 8, 5 / 8))

    clef, ctable = E.clef_scores(clef_gold, PRED, [A, D, P])
    assert (clef["clef_tp"], clef["clef_fp"], clef["clef_fn"]) == (3, 5, 6)
    assert (clef["clef_precision"], clef["clef_recall"], clef["clef_f1"]) == pytest.approx((3 / 8, 3 / 9, 6 / 17))
    per = ctable["per_type"]  # TP and FN by the gold type, FP by the predicted type
    assert {lab: (r["tp"], r["fp"], r["fn"]) for lab, r in per.items()} == {A: (1, 2, 1), D: (2, 2, 4), P: (0, 1, 1)}
    assert ctable["total"]["f1"] == pytest.approx(6 / 17, abs=1e-6)


def test_clef_count_matches_a_discontinuous_mention_only_with_all_its_fragments() -> None:
    gold = {"a": [(((0, 8), (20, 30)), D), (((0, 8),), D), (((0, 8),), D)]}
    both = (((0, 8), (20, 30)), D)
    # the discontinuous prediction matches T3 only; the two "douleurs" lines need two predictions
    s, _ = E.clef_scores(gold, {"a": [both, (((0, 8),), D)]}, [D])
    assert (s["clef_tp"], s["clef_fp"], s["clef_fn"]) == (2, 0, 1)
    # the extent 0-30 is not the two fragments; the fragments predicted apart are two other entities
    s, _ = E.clef_scores(gold, {"a": {(0, 30, D)}}, [D])
    assert (s["clef_tp"], s["clef_fp"], s["clef_fn"]) == (0, 1, 3)
    s, _ = E.clef_scores(gold, {"a": {(0, 8, D), (20, 30, D)}}, [D])
    assert (s["clef_tp"], s["clef_fp"], s["clef_fn"]) == (1, 1, 2)
    # the type must match too; a prediction for a document without gold is not read (BRATEval reads gold files)
    s, _ = E.clef_scores(gold, {"a": {(0, 8, A)}, "z": {(0, 8, D)}}, [A, D])
    assert (s["clef_tp"], s["clef_fp"], s["clef_fn"]) == (0, 1, 3)


@pytest.mark.parametrize("body,message", [
    ("count: brateval\n", r"task\.yaml: count must be one of units, clef, not 'brateval'"),
    ("count: units\nmetric: clef_f1\n", r"task\.yaml: metric clef_f1 needs the CLEF count: add count: clef"),
    ("training: {select_metric: clef_recall}\n",
     r"task\.yaml: training\.select_metric clef_recall needs the CLEF count: add count: clef"),
])
def test_a_bad_count_is_refused_at_load(tmp_path: Path, body: str, message: str) -> None:
    yaml = _task(tmp_path, "labels: [ANAT, DISO, PROC]\nsplits: {train: train, dev: dev, test: test}\n" + body)
    with pytest.raises(LongAdaptError, match=message):
        load_task(yaml)
    fixed = body.replace("count: brateval", "count: clef").replace("count: units", "count: clef")
    load_task(_task(tmp_path, "labels: [ANAT, DISO, PROC]\nsplits: {train: train, dev: dev, test: test}\n"
                    + (fixed if "count" in fixed else fixed + "count: clef\n")))  # what the message says to write


def test_count_clef_is_for_entity_tasks_on_documents(tmp_path: Path) -> None:
    yaml = tmp_path / "iob.yaml"
    yaml.write_text("name: t\nlanguage: fr\ntype: ner\nreader: iob\ndata_root: .\nlabels: [DISO]\ncount: clef\n"
                    "splits: {train: a, dev: a, test: a}\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"iob\.yaml: count: clef .* applies to ner tasks on documents \(reader "
                                             r"brat or xmi\); remove it or write count: units"):
        load_task(yaml)
    # units (the default) reads no CLEF gold
    assert load_task(_clef_task(tmp_path / "u", "units")).load_data().clef_gold == {}


def test_predict_gold_writes_both_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """predict --gold on document a (hand-computed from the counts of test_units_and_clef_counts_hand_checked):
    units TP 4, FP 2, FN 2 (P = R = F1 = 2/3); clef TP 3, FP 3, FN 4 (P 1/2, R 3/7, F1 6/13)."""
    import json
    import logging

    from longadapt.evaluation.predict import ModelTask, _score_gold

    src = _doc(tmp_path, "a", folder="brat")
    out = tmp_path / "pred"
    (out / "json").mkdir(parents=True)
    ents = [{"start": s, "end": e, "label": lab} for s, e, lab in sorted(PRED["a"])]
    (out / "json" / "a.json").write_text(json.dumps({"id": "a", "entities": ents}), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="longadapt")
    from longadapt.evaluation.data import document_words
    from longadapt.evaluation.readers import read_brat

    seqs, _, _ = document_words(read_brat(src)[0], "regex", "fragments")
    scheme = E.build_scheme("layers", [A, D, P], [(seqs[0].mentions, E.Words(seqs[0].offsets))])
    _score_gold(out, str(src), ["a"], ModelTask(type="ner", labels=[A, D, P], scheme=scheme))
    written = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    s = written["scores"]
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert (s["clef_tp"], s["clef_fp"], s["clef_fn"]) == (3, 3, 4)
    assert (s["clef_precision"], s["clef_recall"], s["clef_f1"]) == pytest.approx((1 / 2, 3 / 7, 6 / 13))
    assert written["entities"]["clef"]["total"]["tp"] == 3
    line = next(x for x in caplog.text.splitlines() if "F1 0.6667" in x)
    assert "clef_f1 = 0.4615 (P 0.5000, R 0.4286, TP/FP/FN 3/3/4)" in line


def test_predict_gold_counts_coverage_as_evaluation_does(tmp_path: Path) -> None:
    """A gold mention whose boundary falls inside a word cannot be represented by a word tagger: predict --gold
    counts it as evaluation does (1 of 2 representable, lost for a boundary inside a word), not as representable."""
    import json

    from longadapt.evaluation.predict import ModelTask, _score_gold

    src = _doc(tmp_path, "n", text="Une toux sèche et une dyspnée.",
               ann="T1\tCLINENTITY 4 8\ttoux\nT2\tCLINENTITY 22 26\tdysp\n", folder="brat")
    out = tmp_path / "pred"
    (out / "json").mkdir(parents=True)
    (out / "json" / "n.json").write_text(json.dumps({"id": "n", "entities": [
        {"start": 4, "end": 8, "label": "CLINENTITY"}]}), encoding="utf-8")
    _score_gold(out, str(src), ["n"], ModelTask(type="ner", labels=["CLINENTITY"],
                                                scheme=E.FlattenScheme(["CLINENTITY"])))
    written = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    total = written["entities"]["total"]
    assert (total["gold"], total["representable"], total["correct"]) == (2, 1, 1)
    assert total["lost"] == {E.LOST_WORD: 1}
    assert (written["scores"]["precision"], written["scores"]["recall"]) == pytest.approx((1.0, 0.5))
