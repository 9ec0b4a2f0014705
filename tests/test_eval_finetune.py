"""Fine-tuning runs with a tiny random BERT on the real tasks (few examples, few steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from longadapt.evaluation import metrics as M
from longadapt.evaluation.finetune import RunLimits, run
from longadapt.evaluation.tasks import FinetuneConfig, load_task
from longadapt.evaluation.testing import tiny_bert
from longadapt.tokenizers import load_tokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, minilm_dir: Path) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", minilm_dir, max_position_embeddings=128)


def _best_epoch(history, metric):
    evals = [(h["dev"][metric], -h["epoch"]) for h in history if "dev" in h]
    return -max(evals)[1]


def test_document_ner_run(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=FinetuneConfig(epochs=3, learning_rate=5e-3),
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
    # one scope per field (issue #25 item 8): what the run used, the whole split, and the limit between them
    assert res.data["test"]["used"]["examples"] == 3 and res.data["test"]["split"]["examples"] == 45
    assert res.data["test"]["limit"] == "--max-eval-docs 3" and res.data["train"]["limit"] == "--max-train-docs 4"
    assert res.data["train"]["used"]["documents"] == 4 and res.data["train"]["split"]["documents"] == 30
    assert len(res.data["test"]["split"]["sha256"]) == 64 and res.versions["transformers"]
    # entity counts and coverage are of the documents used; the whole split's coverage sits in data.split
    whole = task.load_data().stats["train"].entities
    assert res.entities["scope"] == "used" and res.entities["train"]["total"]["gold"] < whole["total"]["gold"]
    assert res.data["train"]["split"]["coverage"] == whole["total"]["representable"] / whole["total"]["gold"]
    assert res.entities["coverage"]["train"] == (res.entities["train"]["total"]["representable"]
                                                 / res.entities["train"]["total"]["gold"])
    assert res.timing["optimizer_steps"] > 0
    # every epoch's real training tokens over the training time (3 epochs of the same items)
    trained = res.timing["train_tokens_per_s"] * res.timing["train_s"]
    assert trained == pytest.approx(3 * res.diagnostics["train_tokens"], rel=0.05)


def test_seeds_are_reproducible(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-e3c-ner", data_root=shared_data)
    kw = dict(training=FinetuneConfig(epochs=1, batch_size=8), limits=RunLimits(max_train_docs=24, max_eval_docs=12))
    a = run(str(tiny_dir), task, seed=1, **kw)
    b = run(str(tiny_dir), task, seed=1, **kw)
    c = run(str(tiny_dir), task, seed=2, **kw)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] and a.test == b.test
    assert a.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_dev_is_predicted_again_only_when_the_restore_changes_the_weights(tiny_dir: Path, shared_data: Path,
                                                                         monkeypatch) -> None:
    from longadapt.evaluation.adapters import TokenAdapter

    task = load_task("fr-e3c-ner", data_root=shared_data)
    passes: list[int] = []
    predict = TokenAdapter.predict

    def counted(self, runner, examples, *args, **kwargs):
        passes.append(len(examples))
        return predict(self, runner, examples, *args, **kwargs)

    monkeypatch.setattr(TokenAdapter, "predict", counted)
    limits = RunLimits(max_train_docs=24, max_eval_docs=12)
    one = run(str(tiny_dir), task, seed=1, training=FinetuneConfig(epochs=1, batch_size=8), limits=limits)
    n_dev, n_test = one.data["dev"]["used"]["examples"], one.data["test"]["used"]["examples"]
    assert passes == [n_dev, n_test]  # one epoch: dev once (selection), then test; not dev twice
    assert one.dev["restored"] == one.dev["f1"]
    passes.clear()
    # an earlier epoch selected (at lr 1.0 the model finds no mention: dev F1 0 every epoch, and a tie keeps the
    # first): its weights are restored, and dev is predicted again as a check of the restore
    three = run(str(tiny_dir), task, seed=1, training=FinetuneConfig(epochs=3, batch_size=8, learning_rate=1.0),
                limits=limits)
    assert three.best_epoch < 3
    assert passes == [n_dev] * 4 + [n_test] and three.dev["restored"] == pytest.approx(three.dev["f1"])


def test_multilabel_threshold_from_dev_is_used_on_test(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-morfitt", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=FinetuneConfig(epochs=1, learning_rate=1e-3),
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
    res = run(str(tiny_dir), task, seed=0, training=FinetuneConfig(epochs=2, learning_rate=1e-3, batch_size=8),
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
    sts = run(str(tiny_dir), load_task(tmp_path / "sts.yaml"), seed=0, training=FinetuneConfig(epochs=1, batch_size=4),
              limits=RunLimits(max_steps=2))
    assert {"spearman", "edrm", "pearson", "rmse"} <= set(sts.test) and sts.main_metric == "spearman"
    assert sts.config["training"]["epochs"] == 1 and sts.timing["optimizer_steps"] == 2
    assert max(r["n_windows"] for r in sts.per_example) > 1  # long texts pooled over windows
    cls = run(str(tiny_dir), load_task(tmp_path / "cls.yaml"), seed=0, training=FinetuneConfig(epochs=1))
    assert set(cls.buckets) == {"0-150", ">150"}
    assert cls.test["weighted_f1"] == pytest.approx(
        M.classification_scores([["long", "short"].index(r["gold"]) for r in cls.per_example],
                                [["long", "short"].index(r["pred"]) for r in cls.per_example], 2)["weighted_f1"])


def test_garbage_new_head_is_redrawn_and_loaded_nan_refused(tiny_dir: Path) -> None:
    from transformers import AutoModelForTokenClassification

    from longadapt.errors import LongAdaptError
    from longadapt.evaluation.models import check_parameters as _check_parameters

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
    assert main(["import", str(tiny_dir), str(core), "--max-length", "2048", "--local-attention", "64",
                 "--global-attn-every-n-layers", "2"]) == 0
    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    res = run(str(core), task, seed=0, training=FinetuneConfig(epochs=1), limits=RunLimits(max_train_docs=2, max_eval_docs=2))
    assert res.model["model_type"] == "longadapt" and res.model["max_length"] == 2048
    assert all(r["n_windows"] == 1 for r in res.per_example)  # whole documents in one window
    assert np.isfinite(res.history[0]["train_loss"])


def test_budget_batches_cover_every_item_once_within_the_budget():
    import torch

    from longadapt.evaluation.batching import BudgetBatches

    lengths = [512, 90, 510, 300, 700, 12, 512, 256, 1500, 40]  # 1,500 alone is over the budget
    sampler = BudgetBatches(lengths, 1024, torch.Generator().manual_seed(0))
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each item exactly once
        for b in batches:
            assert sum(lengths[i] for i in b) <= 1024 or len(b) == 1
    assert epochs[0] != epochs[1]  # a new order every epoch, the same batches
    assert sorted(map(sorted, epochs[0])) == sorted(map(sorted, epochs[1]))
    again = BudgetBatches(lengths, 1024, torch.Generator().manual_seed(0))
    assert [list(again) for _ in range(3)] == epochs  # seeded


def test_budget_batches_keep_a_units_members_together_and_plan_from_sizes_alone():
    """Units (documents) with several members (windows) travel whole; the plan depends on the unit sizes
    (words) and the seed only, so one model's windows and another's whole documents get the same batches."""
    import torch

    from longadapt.evaluation.batching import BudgetBatches

    words = [300, 120, 800, 450, 60, 200]
    windows = [[0, 1], [2], [3, 4, 5, 6], [7, 8], [9], [10]]  # a 512-token model's windows per document
    whole = [[0], [1], [2], [3], [4], [5]]  # a long model: one item per document
    a = BudgetBatches(words, 600, torch.Generator().manual_seed(3), windows)
    b = BudgetBatches(words, 600, torch.Generator().manual_seed(3), whole)
    ea, eb = [list(a) for _ in range(2)], [list(b) for _ in range(2)]
    assert a.visited == b.visited and len(a) == len(b)  # the same documents in the same steps
    for batches in ea:
        assert sorted(i for batch in batches for i in batch) == list(range(11))
        for batch in batches:  # a document's windows are never split over two batches
            assert all(set(m) <= set(batch) or not set(m) & set(batch) for m in windows)
    assert sorted(len(x) for x in ea[0]) != sorted(len(x) for x in eb[0])  # other items, same plan


def test_a_new_entity_head_starts_at_the_class_prior(tiny_dir: Path, shared_data: Path) -> None:
    """Each layer's output bias is the log frequency of its classes in the training words (a head at zero
    bias first spends its steps learning that words are outside every layer; see init_head)."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForTokenClassification

    from longadapt.evaluation.adapters import TokenAdapter

    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    data = task.load_data()
    tok = load_tokenizer(str(tiny_dir), for_words=True)
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


def test_micro_batches_bound_the_padded_size_and_keep_every_item():
    from longadapt.evaluation import windows as W
    from longadapt.evaluation.batching import micro_batches

    docs = [([([1] * n, None) for n in rows], 0) for rows in ([512, 40], [512], [100], [300, 300, 20], [64], [1200])]
    groups = micro_batches(docs, 1024)
    assert sorted(i for g in groups for i in g) == list(range(len(docs)))
    for g in groups:
        rows = [len(ids) for i in g for ids, _ in docs[i][0]]
        assert len(rows) * max(rows) <= 1024 or len(g) == 1  # the 1,200-token document goes alone
    assert micro_batches(docs, 0) == [list(range(len(docs)))]
    wins = [W.Window(0, 0, n, [1] * n, 0) for n in (10, 500, 20, 30)]
    assert micro_batches(wins, 64) == [[0, 2], [3], [1]]  # grouped by length: 2 x 20 fits, 3 x 30 does not


@pytest.mark.parametrize("task_name", ["fr-e3c-ner-doc", "fr-morfitt", "fr-frenchmedmcqa"])
def test_micro_batched_gradient_is_the_whole_batch_gradient(tiny_dir: Path, shared_data: Path, task_name: str) -> None:
    """Splitting a batch into memory-bounded passes changes memory, not the update: the summed gradient of the
    weighted passes equals the one-pass gradient (dropout off so both see the same network)."""
    from accelerate import Accelerator

    from longadapt.evaluation import tasktypes
    from longadapt.evaluation.batching import micro_batches, train_step

    task = load_task(task_name, data_root=shared_data)
    data = task.load_data()
    cfg = task.training()
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    tok.model_max_length = 10**9
    adapter = tasktypes.get(task.type).adapter_class()(task, tok, cfg, 128, data)
    items = adapter.train_items(data.limited("train", 6))[:12]
    torch.manual_seed(0)
    model = adapter.model_class().from_pretrained(tiny_dir, **adapter.model_kwargs()).eval()
    accelerator = Accelerator()
    grads = []
    for micro in (0, 200):
        model.zero_grad()
        loss, passes = train_step(accelerator, model, adapter, items, micro)
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, float(loss), passes))
    (whole, loss_whole, one), (split, loss_split, several) = grads
    assert one == 1 and several == len(micro_batches(items, 200)) > 2
    assert loss_split == pytest.approx(loss_whole, rel=1e-5)
    assert whole.keys() == split.keys() and len(whole) > 10
    for name, g in whole.items():
        torch.testing.assert_close(split[name], g, rtol=1e-4, atol=1e-6, msg=name)


def _bare_adapter(kind: str, labels: list[str], metric: str):
    from types import SimpleNamespace

    from longadapt.evaluation.adapters import ChoiceAdapter, SequenceAdapter

    cls = ChoiceAdapter if kind == "mcqa" else SequenceAdapter
    adapter = cls.__new__(cls)
    adapter.task = SimpleNamespace(type=kind, metric=metric, config=SimpleNamespace(labels=labels, score_scale=[0.0, 5.0]))
    adapter.labels = adapter.options = labels
    adapter.kind = kind
    return adapter


def test_constant_baseline_on_hand_checked_examples():
    """The constant predictions are chosen without test and scored on it (values worked out by hand)."""
    from longadapt.evaluation.data import ClassificationExample as C
    from longadapt.evaluation.data import MCQAItem

    ex = lambda *labs: C(id="x", text="t", labels=list(labs))  # noqa: E731
    ml = _bare_adapter("multilabel", ["a", "b", "c"], "weighted_f1")
    train = [ex("a"), ex("a", "b"), ex("a"), ex("c")]  # frequency a > b = c: candidates [a], [a, b], [a, b, c]
    dev = [ex("a"), ex("a", "b"), ex("b")]  # weighted F1: [a] 0.4, [a, b] 0.8, [a, b, c] 0.8 (tie: the smaller set)
    base = ml.constant_baseline(train, dev, [ex("b"), ex("c")])
    assert base["prediction"] == ["a", "b"]
    assert base["test"]["weighted_f1"] == pytest.approx(1 / 3)  # b: P 1/2, R 1 -> 2/3 (support 1); c: 0 (support 1)

    single = _bare_adapter("classification", ["neg", "pos"], "weighted_f1")
    base = single.constant_baseline([ex("pos"), ex("pos"), ex("neg")], [], [ex("pos"), ex("neg"), ex("neg"), ex("neg")])
    assert base["prediction"] == ["pos"] and base["test"]["accuracy"] == pytest.approx(0.25)

    q = lambda *answers: MCQAItem(id="q", question="?", options={o: o for o in "abcde"}, answers=list(answers))  # noqa: E731
    mc = _bare_adapter("mcqa", list("abcde"), "hamming_score")
    # dev Hamming: [a] (1 + 1/2 + 0) / 3 = 0.5 = [a, b]'s (1/2 + 1 + 0) / 3; every other set is lower
    base = mc.constant_baseline([q("a")], [q("a"), q("a", "b"), q("c")], [q("a"), q("b")])
    assert base["prediction"] == ["a"] and base["test"] == {"hamming_score": 0.5, "exact_match": 0.5}

    reg = _bare_adapter("regression", [], "spearman")
    sc = lambda v: C(id="s", text="t", score=v)  # noqa: E731
    base = reg.constant_baseline([sc(1.0), sc(3.0)], [], [sc(2.0), sc(4.0)])
    assert base["prediction"] == 2.0 and base["test"]["spearman"] == 0.0
    assert base["test"]["rmse"] == pytest.approx(np.sqrt(2.0))


def test_a_run_that_does_not_beat_the_constant_baseline_says_so(tiny_dir: Path, shared_data: Path) -> None:
    task = load_task("fr-morfitt", data_root=shared_data)
    res = run(str(tiny_dir), task, seed=0, training=FinetuneConfig(epochs=1, learning_rate=1e-6),
              limits=RunLimits(max_train_docs=12, max_eval_docs=12))
    assert res.baseline is not None and res.baseline["prediction"]
    assert set(res.baseline["test"]) == set(res.test)
    beaten = res.score > res.baseline["test"]["weighted_f1"]
    assert beaten != any("not above the constant baseline" in w for w in res.warnings)
    assert not beaten  # 1 step at 1e-6 from a random 2-layer model
    warning = next(w for w in res.warnings if "not above the constant baseline" in w)
    others = [m for m, v in res.baseline["test"].items() if m != "weighted_f1" and res.test[m] > v]
    assert ("above the constant only on" in warning) == bool(others)
    assert all(f"{m} {res.test[m]:.4f} vs {res.baseline['test'][m]:.4f}" in warning for m in others)


def test_mcqa_prediction_batches_by_tokens_keep_each_question_in_place(tiny_dir: Path, shared_data: Path) -> None:
    from accelerate import Accelerator

    from longadapt.evaluation.adapters import ChoiceAdapter
    from longadapt.evaluation.batching import Runner as _Runner

    task = load_task("fr-frenchmedmcqa", data_root=shared_data)
    data = task.load_data()
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    adapter = ChoiceAdapter(task, tok, task.training(), 128, data)
    torch.manual_seed(0)
    model = adapter.model_class().from_pretrained(tiny_dir, **adapter.model_kwargs())
    enc = adapter._encode(data["dev"][:20])
    acc = Accelerator()
    one_by_one = np.concatenate([_Runner(acc, model, 1, 10**6).forward_choices(adapter, [e]) for e in enc])
    batched = _Runner(acc, model, 8, 1200).forward_choices(adapter, enc)  # several length groups of questions
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_a_quaero_run_records_and_logs_both_counts(tiny_dir: Path, shared_data: Path, tmp_path: Path, caplog) -> None:
    """The QUAERO tasks (count: clef): run.json's test scores hold the units count (f1, the main metric) and the
    CLEF eHealth count (clef_*), both recomputed here from the written predictions; the log lines give both."""
    import json
    import logging

    from longadapt.cli import main
    from longadapt.evaluation import entities as E

    caplog.set_level(logging.INFO, logger="longadapt")
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", f"tiny={tiny_dir}", "--tasks", "fr-quaero-emea-ner", "--seeds", "1",
                 "--epochs", "5", "--max-train-docs", "3", "--max-eval-docs", "2",
                 "--set", "training.learning_rate=1e-2", "--data-root", str(shared_data), "--out", str(out)]) == 0
    run_dir = out / "tiny" / "fr-quaero-emea-ner" / "seed-0"
    rec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    test = rec["test"]
    assert rec["main_metric"] == "f1" and rec["score"] == test["f1"] and rec["config"]["select_metric"] == "f1"
    assert rec["entities"]["count"] == "clef" and set(E.CLEF_KEYS) <= set(test) and set(E.CLEF_KEYS) <= set(rec["dev"])
    data = load_task("fr-quaero-emea-ner", data_root=shared_data).load_data()
    docs = data.doc_ids("test")[:2]
    rows = [json.loads(x) for x in (run_dir / "predictions" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    pred = {r["id"]: {(m["start"], m["end"], m["label"]) for m in r["mentions"]} for r in rows}
    assert sorted(pred) == sorted(docs)
    labels = data.scheme.labels
    units, _ = E.mention_scores({d: data.gold["test"][d] for d in docs}, pred, labels)
    clef, _ = E.clef_scores({d: data.clef_gold["test"][d] for d in docs}, pred, labels)
    main_keys = ("f1", "precision", "recall")
    assert {k: test[k] for k in main_keys} == pytest.approx({k: units[k] for k in main_keys})
    assert {k: test[k] for k in E.CLEF_KEYS} == pytest.approx(clef)
    assert test["clef_tp"] + test["clef_fn"] == sum(len(data.clef_gold["test"][d]) for d in docs)  # every T line
    assert test["clef_tp"] + test["clef_fp"] == rec["entities"]["test"]["total"]["predicted"]
    assert rec["entities"]["test"]["clef"]["total"]["tp"] == test["clef_tp"]  # and per type
    assert rec["entities"]["test"]["total"]["predicted"] > 20 and test["clef_tp"] > 0  # the counts count something
    assert "CLEF eHealth count of test" in (run_dir / "entities.md").read_text(encoding="utf-8")
    both = [x for x in caplog.text.splitlines() if "test f1 = " in x and "clef_f1 = " in x]
    assert len(both) == 2  # the run's line and the summary's line


def test_an_entity_model_that_predicts_nothing_or_one_type_is_told_what_to_try() -> None:
    from types import SimpleNamespace

    from longadapt.evaluation.adapters import TokenAdapter

    adapter = object.__new__(TokenAdapter)  # the warning reads only the task and the scored table
    adapter.task = SimpleNamespace(type="ner", name="fr-quaero-emea-ner")
    adapter.table = {"total": {"gold": 7}, "per_type": {"CHEM": {"gold": 4, "predicted": 0},
                                                        "DISO": {"gold": 3, "predicted": 0}}}
    (nothing,) = adapter.output_warnings([], {})
    assert nothing.startswith("fr-quaero-emea-ner: the model predicted no entity on the test split (7 gold mentions)")
    assert "try a higher training.learning_rate" in nothing
    adapter.table["per_type"]["CHEM"]["predicted"] = 5
    assert adapter.output_warnings([], {}) == ["fr-quaero-emea-ner: every predicted mention on test is CHEM (gold has 2 types)"]
    adapter.table["per_type"]["DISO"]["predicted"] = 1
    assert adapter.output_warnings([], {}) == []
