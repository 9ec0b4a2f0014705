"""The task registry: every built-in task loads from the real data with the documented splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from longadapt.config import parse_overrides
from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import tags_to_spans
from longadapt.evaluation.tasks import available_tasks, load_task

BUILTIN = ["en-e3c-ner", "es-cantemist-ner-doc", "es-codiesp-chapters", "fr-e3c-ner", "fr-e3c-ner-doc",
           "fr-frenchmedmcqa", "fr-morfitt"]


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
    assert (task.training().epochs, task.training().batch_size, task.training().learning_rate) == (15, 16, 1e-4)
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
    assert task.training().batch_tokens == 2048  # a document task trains by tokens


def test_other_builtin_tasks(shared_data: Path) -> None:
    sizes = {"fr-morfitt": (1514, 1022, 1088), "fr-frenchmedmcqa": (2171, 312, 622),
             "es-cantemist-ner-doc": (501, 250, 300), "es-codiesp-chapters": (500, 250, 250)}
    for name, expected in sizes.items():
        task = load_task(name, data_root=shared_data)
        assert tuple(len(task.load_split(s)) for s in ("train", "dev", "test")) == expected, name
    morfitt = load_task("fr-morfitt", data_root=shared_data)
    assert morfitt.type == "multilabel" and morfitt.metric == "weighted_f1"
    assert (morfitt.training().epochs, morfitt.training().batch_size) == (35, 12)
    assert load_task("fr-frenchmedmcqa", data_root=shared_data).training().epochs == 20
    fp = morfitt.fingerprint("test")
    assert fp["files"] == 1 and len(fp["sha256"]) == 64


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


@pytest.mark.parametrize(
    "body,message",
    [
        ("type: ner\nreader: tsv\nlabels: [A]\n", r"reader 'tsv' cannot feed a ner task"),
        ("type: classif\nreader: tsv\nlabels: [A]\n", r"type must be one of"),
        ("type: ner\nreader: iob\nlabels: [A]\nsplits:\n  train: a\n  dev: a\n", r"split 'test' is missing"),
        ("type: ner\nreader: iob\nlabels: [A]\nepochs: 3\n", r"unknown key 'epochs'"),
        ("type: ner\nreader: iob\nlabels: [A]\nsplits: {train: a, dev: a, test: a}\ntraining: {epoch: 3}\n",
         r"t\.yaml: unknown key 'training\.epoch' \(did you mean 'training\.epochs'\?\)"),
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
