"""Fine-tuning runs with a tiny random BERT on the real tasks (few examples, few steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from longadapt.evaluation import metrics as M
from longadapt.evaluation.finetune import RunLimits, run
from longadapt.evaluation.tasks import TrainingConfig, load_task
from longadapt.evaluation.testing import tiny_bert


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, minilm_dir: Path) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", minilm_dir, max_position_embeddings=128)


def _best_epoch(history, metric):
    evals = [(h["dev"][metric], -h["epoch"]) for h in history if "dev" in h]
    return -max(evals)[1]


def test_document_ner_run(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=TrainingConfig(epochs=3, learning_rate=5e-3),
              limits=RunLimits(max_train_docs=4, max_eval_docs=3))
    assert res.main_metric == "f1" and 0.0 <= res.score <= 1.0
    assert res.score == res.test["f1"]
    assert len([h for h in res.history if "dev" in h]) == 3
    assert res.best_epoch == _best_epoch(res.history, "f1")  # selected on dev entity F1, not token accuracy
    assert res.dev["restored"] == pytest.approx(res.dev["f1"])  # best weights restored before the test
    assert sum(b["n"] for b in res.buckets.values()) == 3
    assert len(res.per_example) == 3 and {"id", "n_words", "n_windows", "f1", "bucket"} <= set(res.per_example[0])
    assert all(r["n_windows"] > 1 for r in res.per_example)  # 300-word documents, 128-token model
    assert res.model["max_length"] == 128 and res.config["training"]["epochs"] == 3
    assert res.config["training"]["batch_size"] == 16 and res.config["training"]["weight_decay"] == 0.01
    assert res.data["test"]["examples"] == 3 and res.data["test"]["examples_total"] == 45
    assert len(res.data["test"]["sha256"]) == 64 and res.versions["transformers"]
    assert res.timing["optimizer_steps"] > 0


def test_seeds_are_reproducible(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-e3c-ner", data_root=shared_data)
    kw = dict(training=TrainingConfig(epochs=1, batch_size=8), limits=RunLimits(max_train_docs=24, max_eval_docs=12))
    a = run(str(tiny_dir), task, seed=1, **kw)
    b = run(str(tiny_dir), task, seed=1, **kw)
    c = run(str(tiny_dir), task, seed=2, **kw)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] and a.test == b.test
    assert a.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_multilabel_threshold_from_dev_is_used_on_test(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-morfitt", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=TrainingConfig(epochs=1, learning_rate=1e-3),
              limits=RunLimits(max_train_docs=24, max_eval_docs=16))
    assert res.threshold in M.DEFAULT_THRESHOLDS
    labels = task.config.labels
    gold = np.array([[lab in r["gold"] for lab in labels] for r in res.per_example])
    pred = np.array([[lab in r["pred"] for lab in labels] for r in res.per_example])
    assert M.multilabel_scores(gold, pred) == pytest.approx(res.test)
    assert all(r["pred"] for r in res.per_example)  # at_least_one
    assert res.config["training"]["epochs"] == 1 and res.config["training"]["batch_size"] == 12


def test_mcqa_run(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-frenchmedmcqa", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=TrainingConfig(epochs=2, learning_rate=1e-3, batch_size=8),
              limits=RunLimits(max_train_docs=16, max_eval_docs=12))
    assert set(res.test) == {"hamming_score", "exact_match"}
    assert res.dev["restored"] == pytest.approx(res.dev["hamming_score"])
    sets = [(set(r["gold"]), set(r["pred"])) for r in res.per_example]
    assert M.hamming_score([g for g, _ in sets], [p for _, p in sets]) == pytest.approx(res.score)


def _tsv(path: Path, rows: list[tuple[str, str]], header: str) -> None:
    path.write_text(header + "\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")


def test_user_regression_and_single_label_tasks(tiny_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = "fièvre toux douleur patient examen normal sévère".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(5, 400))) for _ in range(30)]
    for split, part in (("train", texts[:14]), ("dev", texts[14:22]), ("test", texts[22:])):
        _tsv(tmp_path / f"sts-{split}.tsv", [(t, f"{rng.uniform(0, 5):.2f}") for t in part], "text\tscore")
        _tsv(tmp_path / f"cls-{split}.tsv", [(t, "long" if len(t.split()) > 150 else "short") for t in part],
             "text\tlabel")
    (tmp_path / "sts.yaml").write_text(
        "type: regression\nreader: tsv\nreader_options: {score_column: score, label_column: null}\n"
        "data_root: .\nsplits: {train: sts-train.tsv, dev: sts-dev.tsv, test: sts-test.tsv}\n", encoding="utf-8")
    (tmp_path / "cls.yaml").write_text(
        "type: classification\nreader: tsv\nlabels: [long, short]\nlength_buckets: [150]\n"
        "data_root: .\nsplits: {train: cls-train.tsv, dev: cls-dev.tsv, test: cls-test.tsv}\n", encoding="utf-8")
    sts = run(str(tiny_dir), load_task(tmp_path / "sts.yaml"), seed=0, training=TrainingConfig(epochs=1, batch_size=4),
              limits=RunLimits(max_steps=2))
    assert {"spearman", "edrm", "pearson", "rmse"} <= set(sts.test) and sts.main_metric == "spearman"
    assert sts.config["training"]["epochs"] == 1 and sts.timing["optimizer_steps"] == 2
    assert max(r["n_windows"] for r in sts.per_example) > 1  # long texts pooled over windows
    cls = run(str(tiny_dir), load_task(tmp_path / "cls.yaml"), seed=0, training=TrainingConfig(epochs=1))
    assert set(cls.buckets) == {"0-150", ">150"}
    assert cls.test["weighted_f1"] == pytest.approx(
        M.classification_scores([["long", "short"].index(r["gold"]) for r in cls.per_example],
                                [["long", "short"].index(r["pred"]) for r in cls.per_example], 2)["weighted_f1"])


def test_garbage_new_head_is_redrawn_and_loaded_nan_refused(tiny_dir: Path) -> None:
    from transformers import AutoModelForTokenClassification

    from longadapt.errors import LongAdaptError
    from longadapt.evaluation.finetune import _check_parameters

    model = AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=3)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
        model.classifier.bias.fill_(1e30)
    fixed = _check_parameters(model, {"classifier.weight", "classifier.bias"}, str(tiny_dir), model.config)
    assert fixed == ["classifier.bias", "classifier.weight"]
    assert torch.isfinite(model.classifier.weight).all() and (model.classifier.bias == 0).all()
    assert 0 < model.classifier.weight.std() < 0.1
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[0, 0] = float("inf")
    with pytest.raises(LongAdaptError, match="non-finite weights"):
        _check_parameters(model, {"classifier.weight"}, str(tiny_dir), model.config)


def test_longadapt_core_through_the_auto_classes(tiny_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """A core checkpoint (model_type longadapt) made long runs the same code path and sees whole documents."""
    from longadapt.cli import main

    core = tmp_path / "core"
    assert main(["import", str(tiny_dir), str(core), "--max-length", "2048", "--local-window", "64",
                 "--global-every", "2"]) == 0
    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    res = run(str(core), task, seed=0, training=TrainingConfig(epochs=1), limits=RunLimits(max_train_docs=2, max_eval_docs=2))
    assert res.model["model_type"] == "longadapt" and res.model["max_length"] == 2048
    assert all(r["n_windows"] == 1 for r in res.per_example)  # whole documents in one window
    assert np.isfinite(res.history[0]["train_loss"])


def test_token_budget_batches_cover_every_item_once_within_the_budget():
    import torch

    from longadapt.evaluation.finetune import TokenBudgetBatches

    lengths = [512, 90, 510, 300, 700, 12, 512, 256, 1500, 40]  # 1,500 alone is over the budget
    sampler = TokenBudgetBatches(lengths, 1024, torch.Generator().manual_seed(0))
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each item exactly once
        for b in batches:
            assert sum(lengths[i] for i in b) <= 1024 or len(b) == 1
    assert epochs[0] != epochs[1]  # a new order every epoch, the same batches
    assert sorted(map(sorted, epochs[0])) == sorted(map(sorted, epochs[1]))
    again = TokenBudgetBatches(lengths, 1024, torch.Generator().manual_seed(0))
    assert [list(again) for _ in range(3)] == epochs  # seeded


def test_a_new_entity_head_starts_at_the_class_prior(tiny_dir: Path, shared_data: Path) -> None:
    """Each layer's output bias is the log frequency of its classes in the training words (a head at zero
    bias first spends its steps learning that words are outside every layer; see init_head)."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForTokenClassification

    from longadapt.evaluation import windows as W
    from longadapt.evaluation.finetune import TokenAdapter

    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    data = task.load_data()
    tok = W.load_tokenizer(str(tiny_dir))
    adapter = TokenAdapter(task, tok, task.training(), 128, data)
    set_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=adapter.n_layers * 3)
    assert not adapter.init_head(model, data["train"], set())  # a head read from the checkpoint is kept
    assert adapter.init_head(model, data["train"], {"classifier.weight", "classifier.bias"})
    classes = np.concatenate([ex.classes for ex in data["train"]])
    counts = np.stack([np.bincount(classes[:, k], minlength=3) + 1 for k in range(adapter.n_layers)])
    expected = np.log(counts / counts.sum(1, keepdims=True)).reshape(-1)
    assert model.classifier.bias.detach().numpy() == pytest.approx(expected, abs=1e-6)
    assert expected[0] > np.log(0.9) and expected[1] < np.log(0.1)  # O dominates the first layer
