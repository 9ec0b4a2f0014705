"""The task registry: every built-in task loads from the real data with the documented splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from longadapt.config import parse_overrides
from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import tags_to_spans
from longadapt.evaluation.tasks import available_tasks, load_task

MANTRA = [f"{lang}-mantra-gsc-{sub}-ner" for lang in ("fr", "de", "es") for sub in ("emea", "medline", "patents")
          if (lang, sub) != ("es", "patents")]  # the release has no Spanish patents
BUILTIN = ["en-e3c-ner", "es-cantemist-ner-doc", "es-codiesp-chapters", "fr-e3c-ner", "fr-e3c-ner-doc",
           "fr-frenchmedmcqa", "fr-morfitt", *MANTRA]


def _entities(seqs) -> int:
    return sum(len(tags_to_spans(s.tags)) for s in seqs)


def test_registry_lists_the_builtin_tasks() -> None:
    assert set(BUILTIN) <= set(available_tasks())


@pytest.mark.parametrize("name", ["fr-e3c-ner", "en-e3c-ner"])
def test_e3c_sentence_task_protocol(shared_data: Path, name: str) -> None:
    task = load_task(name, data_root=shared_data)
    train, dev, test = (task.load_split(s) for s in ("train", "dev", "test"))
    layer2, l1_train, l1_test = {"fr-e3c-ner": (2389, 504, 605), "en-e3c-ner": (2873, 669, 851)}[name]
    assert len(train) + len(dev) == layer2
    assert len(dev) == layer2 - int(0.9 * layer2)  # the last 10% of layer 2, contiguous
    assert len(test) == l1_train + l1_test
    assert train[-1].line < dev[0].line  # dev follows train in the file: no sentence in both
    assert task.tag_labels == ["O", "B-ety", "I-ety"]
    assert (task.training().epochs, task.training().batch_size, task.training().learning_rate) == (4, 16, 1e-4)
    assert task.training().weight_decay == 0.01


def test_e3c_document_task(shared_data: Path) -> None:
    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    data = task.load_data()
    train, dev, test = data["train"], data["dev"], data["test"]
    assert (len(train), len(dev), len(test)) == (30, 6, 45)
    assert not {d.id for d in train} & {d.id for d in dev}
    assert dev[0].id == "FR100275" and all(d.id.startswith("FR") for d in dev)  # 6th train id in order
    # every CLINENTITY of the README is a gold mention, and the default scheme represents all of them
    gold = {s: data.stats[s].entities["total"] for s in ("train", "dev", "test")}
    assert gold["train"]["gold"] + gold["dev"]["gold"] == 596 and gold["test"]["gold"] == 731
    assert all(g["representable"] == g["gold"] for g in gold.values())
    assert data.scheme.name == "layers" and data.scheme.n_layers == 4  # "hépatites virales A, B et C" nests 4 deep
    assert sum(d.meta["n_whitespace_words"] for d in test) == 13382
    assert all(d.offsets is not None and len(d.offsets) == len(d.words) for d in test)
    # a document task trains on batches of whole documents counted in words (the same plan for every model)
    assert task.training().batch_words == 800 and task.training().batch_tokens is None


def test_other_builtin_tasks(shared_data: Path) -> None:
    sizes = {"fr-morfitt": (1514, 1022, 1088), "fr-frenchmedmcqa": (2171, 312, 622),
             "es-cantemist-ner-doc": (501, 250, 300), "es-codiesp-chapters": (500, 250, 250)}
    for name, expected in sizes.items():
        task = load_task(name, data_root=shared_data)
        assert tuple(len(task.load_split(s)) for s in ("train", "dev", "test")) == expected, name
    morfitt = load_task("fr-morfitt", data_root=shared_data)
    assert morfitt.type == "multilabel" and morfitt.metric == "weighted_f1"
    # built-in tasks state a CPU budget; a task without one gets the type's DrBenchmark defaults
    t = morfitt.training()
    assert (t.epochs, t.batch_size, t.learning_rate, t.warmup_ratio) == (3, 16, 3e-4, 0.1)
    mcqa = load_task("fr-frenchmedmcqa", data_root=shared_data).training()
    assert (mcqa.epochs, mcqa.learning_rate, mcqa.warmup_ratio) == (3, 1e-4, 0.1)  # the budget measured in results.md
    codiesp = load_task("es-codiesp-chapters", data_root=shared_data).training()
    assert (codiesp.epochs, codiesp.batch_size, codiesp.learning_rate, codiesp.warmup_ratio) == (3, 8, 3e-4, 0.1)
    bare = load_task("fr-morfitt", data_root=shared_data, overrides={"training": {"epochs": None, "batch_size": None,
                                                                                  "learning_rate": None}})
    assert (bare.training().epochs, bare.training().batch_size, bare.training().learning_rate) == (35, 12, 2e-5)
    fp = morfitt.fingerprint("test")
    assert fp["files"] == 1 and len(fp["sha256"]) == 64


@pytest.mark.parametrize("name", MANTRA)
def test_mantra_gsc_tasks_load(shared_data: Path, name: str) -> None:
    task = load_task(name, data_root=shared_data)
    cfg = task.config
    assert cfg.language == name[:2] and cfg.reader == "brat" and cfg.licence == "GPL-3.0" and "Kors" in cfg.citation
    assert cfg.reader_options["label_from"] == "note"
    assert set(cfg.reader_options["label_map"].values()) <= set(cfg.labels) and len(cfg.labels) == 10
    sources = [cfg.splits[s][0] for s in ("train", "dev", "test")]
    assert all((src.path, src.shuffle_seed, src.shuffle_rounds) == (sources[0].path, 4, 3) for src in sources)
    assert [src.fraction for src in sources] == [[0.0, 0.7], [0.7, 0.8], [0.8, 1.0]]
    units = 50 if "patents" in name else 100
    assert [len(task.read_split(s)) for s in ("train", "dev", "test")] == [
        int(0.7 * units), int(0.8 * units) - int(0.7 * units), units - int(0.8 * units)]
    t = task.training()  # the budget measured on the German and French EMEA tasks (docs/results.md)
    assert (t.epochs, t.learning_rate, t.batch_tokens) == (20, 2e-4, None) and t.batch_words


def test_mantra_gsc_german_emea(shared_data: Path) -> None:
    """German's first annotated task: DrBenchmark's seeded split of the 100 units, every README mention."""
    import random

    task = load_task("de-mantra-gsc-emea-ner", data_root=shared_data)
    data = task.load_data()
    ids = {s: data.doc_ids(s) for s in ("train", "dev", "test")}
    units = sorted(p.stem for p in task.path(task.config.splits["test"][0].path).glob("*.txt"))
    assert [len(ids[s]) for s in ids] == [70, 10, 20]
    assert sorted(ids["train"] + ids["dev"] + ids["test"]) == units  # disjoint, and every unit in one split
    order = list(units)  # DrBenchmark's MANTRAGSC loader, over the units in file-name order
    random.seed(4)
    for _ in range(3):
        random.shuffle(order)
    assert (set(ids["train"]), set(ids["dev"]), set(ids["test"])) == (set(order[:70]), set(order[70:80]), set(order[80:]))
    # README: 425 mentions (a discontinuous one counts once), 11 of them discontinuous
    assert sum(data.stats[s].annotations for s in ids) == 425 and sum(data.stats[s].discontinuous for s in ids) == 11
    assert data.stats["dev"].mapped_labels == {"OBJC|CHEM -> OBJC": 1}  # the quirk, renamed and counted
    # German compounds carry mentions inside words (Penis|gewebe): a word tagger cannot represent them
    test = data.stats["test"].entities["total"]
    assert (test["gold"], test["representable"]) == (63, 60)


def test_user_task_file_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("text\tlabel\nune toux\tA\nla fièvre\tB\n", encoding="utf-8")
    yaml_path = tmp_path / "my-task.yaml"
    yaml_path.write_text(
        "type: classification\nreader: tsv\nlabels: [A, B]\ndata_root: data\n"
        "splits:\n  train: train.tsv\n  dev: train.tsv\n  test: train.tsv\ntraining:\n  epochs: 3\n",
        encoding="utf-8")
    task = load_task(yaml_path)
    assert task.name == "my-task" and task.data_root == (tmp_path / "data").resolve()
    assert [e.labels for e in task.load_split("test")] == [["A"], ["B"]]
    assert task.training().epochs == 3 and task.training().learning_rate == 2e-5
    task = load_task(yaml_path, overrides=parse_overrides(["training.learning_rate=5e-5", "labels=[A, B, C]"]))
    assert task.training().learning_rate == 5e-5 and task.config.labels == ["A", "B", "C"]


def test_seeded_shuffle_split(tmp_path: Path) -> None:
    """shuffle_seed + shuffle_rounds + fraction: DrBenchmark's seeded 70/10/20 split of a corpus without one."""
    import random

    rows = [f"texte {i}\t{'AB'[i % 2]}" for i in range(10)]
    (tmp_path / "all.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    src = "{path: all.tsv, shuffle_seed: 4, shuffle_rounds: 3, fraction: [%s]}"
    (tmp_path / "t.yaml").write_text(
        "type: classification\nreader: tsv\nlabels: [A, B]\ndata_root: .\nsplits:\n"
        f"  train: {src % '0.0, 0.7'}\n  dev: {src % '0.7, 0.8'}\n  test: {src % '0.8, 1.0'}\n", encoding="utf-8")
    task = load_task(tmp_path / "t.yaml")
    got = {s: [e.text for e in task.load_split(s)] for s in ("train", "dev", "test")}
    ids = [f"texte {i}" for i in range(10)]
    random.seed(4)  # DrBenchmark's MANTRAGSC loader: the global generator, three shuffles, cuts at 70 and 80 %
    for _ in range(3):
        random.shuffle(ids)
    expected = {"train": ids[:7], "dev": ids[7:8], "test": ids[8:]}
    assert {s: sorted(v) for s, v in got.items()} == {s: sorted(v) for s, v in expected.items()}
    assert all(v == sorted(v, key=lambda t: int(t.split()[1])) for v in got.values())  # kept in reading order
    task.load_data()  # disjoint: the split check passes
    (tmp_path / "bad.yaml").write_text(
        "type: classification\nreader: tsv\nlabels: [A, B]\ndata_root: .\n"
        "splits: {train: {path: all.tsv, shuffle_rounds: 3}, dev: all.tsv, test: all.tsv}\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"splits\.train\[0\]: shuffle_rounds needs shuffle_seed"):
        load_task(tmp_path / "bad.yaml").load_split("train")


@pytest.mark.parametrize(
    "body,message",
    [
        ("type: ner\nreader: tsv\nlabels: [A]\n", r"reader 'tsv' cannot feed a ner task"),
        ("type: classif\nreader: tsv\nlabels: [A]\n", r"type must be one of"),
        ("type: ner\nreader: iob\nlabels: [A]\nsplits:\n  train: a\n  dev: a\n", r"split 'test' is missing"),
        ("type: ner\nreader: iob\nlabels: [A]\nepochs: 3\n", r"unknown key 'epochs'"),
        ("type: ner\nreader: iob\nlabels: [A]\nsplits: {train: a, dev: a, test: a}\ntraining: {epoch: 3}\n",
         r"t\.yaml:5 \(training\.epoch\): unknown key 'training\.epoch' \(did you mean 'training\.epochs'\?\); "
         r"valid keys under training: at_least_one, "),
        ("type: ner\nreader: iob\nlabels: [A]\nlength_buckets: quantiles\n",
         r"length_buckets must be auto or ascending word counts, e\.g\. \[256, 512, 1024\], not 'quantiles'"),
        ("type: ner\nreader: iob\nlabels: [A]\nlength_buckets: [512, 256]\n",
         r"length_buckets must be auto or ascending word counts.*not \[512, 256\]"),
    ],
)
def test_bad_task_yaml(tmp_path: Path, body: str, message: str) -> None:
    if "splits" not in body:
        body += "splits: {train: a, dev: a, test: a}\n" if "missing" not in message else ""
    f = tmp_path / "t.yaml"
    f.write_text(body + "data_root: .\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=message):
        load_task(f)


def test_unknown_task_name() -> None:
    with pytest.raises(LongAdaptError, match=r"unknown task 'fr-nope'; known tasks: .*fr-e3c-ner"):
        load_task("fr-nope")


def test_user_pos_task(tmp_path: Path) -> None:
    (tmp_path / "pos.txt").write_text("Le DET\npatient NOUN\ntousse VERB\n\nIl PRON\ntousse VERB\n", encoding="utf-8")
    (tmp_path / "pos.yaml").write_text("type: pos\nreader: iob\nlabels: [DET, NOUN, VERB, PRON]\ndata_root: .\n"
                                       "splits: {train: pos.txt, dev: pos.txt, test: pos.txt}\n", encoding="utf-8")
    task = load_task(tmp_path / "pos.yaml")
    assert task.tag_labels == ["DET", "NOUN", "VERB", "PRON"] and task.metric == "accuracy"
    assert [s.tags for s in task.load_split("train")] == [["DET", "NOUN", "VERB"], ["PRON", "VERB"]]
    assert (task.training().epochs, task.training().learning_rate) == (10, 1e-5)
    (tmp_path / "pos.txt").write_text("Le DET\npatient NOM\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"pos\.txt:2: unknown tag 'NOM'"):
        task.load_split("train")


def test_datasets_reader_on_local_datasets(tmp_path: Path) -> None:
    """DrBenchmark's hub datasets have tokens + ClassLabel tags (NER) or text + label columns; offline the
    same reader takes a save_to_disk folder or a Parquet / JSON Lines file."""
    import datasets

    tags = datasets.ClassLabel(names=["O", "B-DISO", "I-DISO", "B-ANAT", "I-ANAT"])
    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(tags)})
    rows = {"train": [("t0", "douleur du genou".split(), [1, 0, 3]), ("t1", "fièvre aiguë".split(), [1, 2])],
            "validation": [("v0", "toux sèche".split(), [1, 2])], "test": [("s0", "mal au dos".split(), [1, 0, 3])]}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"id": [r[0] for r in v], "tokens": [r[1] for r in v],
                                                              "ner_tags": [r[2] for r in v]}, features=features)
                               for s, v in rows.items()})
    dd.save_to_disk(str(tmp_path / "quaero-like"))
    (tmp_path / "ner.yaml").write_text(
        "type: ner\nreader: datasets\nlabels: [DISO, ANAT]\ndata_root: .\n"
        "splits: {train: quaero-like, dev: quaero-like, test: quaero-like}\n", encoding="utf-8")
    data = load_task(tmp_path / "ner.yaml").load_data()
    assert [len(data[s]) for s in ("train", "dev", "test")] == [2, 1, 1]  # dev reads the "validation" split
    assert data["train"][0].tags == ["B-DISO", "O", "B-ANAT"] and data["dev"][0].id == "v0"
    assert data.stats["train"].entities["total"]["gold"] == 3 and data.scheme.name == "flatten"
    (tmp_path / "subset.yaml").write_text(
        "type: ner\nreader: datasets\nlabels: [DISO]\nother_labels: ignore\ndata_root: .\n"
        "splits: {train: quaero-like, dev: quaero-like, test: quaero-like}\n", encoding="utf-8")
    assert load_task(tmp_path / "subset.yaml").load_data().stats["test"].ignored_labels == {"ANAT": 1}

    cls = datasets.Dataset.from_dict({"abstract": ["un texte", "un autre", "encore un"],
                                      "specialities": [["surgery"], ["virology", "surgery"], []]})
    cls.to_parquet(str(tmp_path / "morfitt-like.parquet"))
    (tmp_path / "cls.yaml").write_text(
        "type: multilabel\nreader: datasets\nlabels: [surgery, virology]\ndata_root: .\n"
        "reader_options: {columns: {text: abstract, label: specialities}}\n"
        "splits:\n  train: morfitt-like.parquet\n  dev: {path: morfitt-like.parquet, fraction: [0.0, 0.0]}\n"
        "  test: morfitt-like.parquet\n", encoding="utf-8")
    task = load_task(tmp_path / "cls.yaml")
    assert [e.labels for e in task.load_split("train")] == [["surgery"], ["virology", "surgery"], []]
    (tmp_path / "bad.yaml").write_text(
        "type: multilabel\nreader: datasets\nlabels: [surgery]\ndata_root: .\n"
        "reader_options: {columns: {text: body}}\nsplits: {train: morfitt-like.parquet, dev: morfitt-like.parquet, "
        "test: morfitt-like.parquet}\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"no column 'body' for 'text'; the columns are abstract, specialities"):
        load_task(tmp_path / "bad.yaml").load_split("train")


def test_drbenchmark_protocol(shared_data: Path) -> None:
    task = load_task("fr-quaero-emea-ner", data_root=shared_data, protocol="drbenchmark")
    cfg, training = task.config, task.training()
    assert task.name == "fr-quaero-emea-ner.drbenchmark" and cfg.protocol == "drbenchmark"
    assert (cfg.nested, cfg.discontinuous, cfg.word_splitter, cfg.segment_on, task.metric) == (
        "join", "fragments", "whitespace", ".", "seqeval_f1")
    assert (training.epochs, training.batch_size, training.learning_rate, training.max_length) == (15, 16, 1e-4, 512)
    assert training.truncate and training.batch_tokens is None and training.batch_words is None
    assert training.select_metric == "word_accuracy"
    data = task.load_data()
    assert [data.stats[s].documents for s in ("train", "dev", "test")] == [11, 12, 15]
    assert [len(data[s]) for s in ("train", "dev", "test")] == [475, 431, 422]  # sentences cut at "."
    assert data["test"][0].doc_id == data["test"][1].doc_id  # segments of one document
    # every gold mention is still counted; what joining and sentence cuts lose is said
    test = data.stats["test"].entities["total"]
    assert test["gold"] == 2229 and test["representable"] < test["gold"]
    lost = {k for t in data.stats["test"].entities["per_type"].values() for k in t["lost"]}
    assert {"nesting the scheme cannot hold"} <= lost
    assert load_task("fr-morfitt", data_root=shared_data, protocol="drbenchmark").training().threshold == 0.7
    with pytest.raises(LongAdaptError, match="unknown protocol 'drbench'"):
        load_task("fr-morfitt", data_root=shared_data, protocol="drbench")


def test_a_task_in_another_encoding_is_read_with_the_encoding_it_states(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        d = tmp_path / split
        d.mkdir()
        (d / f"{split}1.txt").write_bytes("Une fièvre élevée.".encode("cp1252"))
        (d / f"{split}1.ann").write_bytes("T1\tSYMPTOM 4 10\tfièvre\n".encode("cp1252"))
    body = "name: t\ntype: ner\nreader: brat\nlabels: [SYMPTOM]\nsplits: {train: train, dev: dev, test: test}\n"
    f = tmp_path / "t.yaml"
    f.write_text(body + "data_root: .\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"train1\.txt:1: not valid utf-8 at byte 6.*encoding: cp1252"):
        load_task(f).load_data()
    f.write_text(body + "encoding: cp1252\ndata_root: .\n", encoding="utf-8")
    data = load_task(f).load_data()
    assert data.gold["test"]["test1"] == {(4, 10, "SYMPTOM")}
    f.write_text(body + "encoding: windows-9999\ndata_root: .\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"t\.yaml: encoding 'windows-9999' is not a codec Python knows"):
        load_task(f)
    f.write_text(body.replace("reader: brat", "reader: xmi").replace("[SYMPTOM]", "[CLINENTITY]")
                 + "encoding: cp1252\ndata_root: .\n", encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"encoding applies to readers of text files, not to reader 'xmi'"):
        load_task(f).load_data()
