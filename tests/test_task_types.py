"""A task type is a unit: one adapter class and one table entry make a new type that `evaluate` fine-tunes
and scores and `predict` serves (as tests/test_strategies does for an adaptation strategy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from longadapt.cli import main
from longadapt.errors import LongAdaptError
from longadapt.evaluation import tasktypes
from longadapt.evaluation.tasks import load_task
from longadapt.evaluation.testing import tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")

MODULE = '''
import numpy as np
from sklearn.metrics import balanced_accuracy_score

from longadapt.evaluation.adapters import SequenceAdapter
from longadapt.evaluation.tasktypes import TaskType, register


class BalancedAdapter(SequenceAdapter):
    """Two or more classes scored by balanced accuracy (the mean of the classes' recalls)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.kind = "classification"  # inputs, head, loss and predictions of a single-label task

    def score(self, examples, out, threshold, fit_threshold, split="test"):
        gold = np.array([self._target(ex) for ex in examples])
        pred = np.asarray(out["logits"]).argmax(-1)
        return {"balanced_accuracy": float(balanced_accuracy_score(gold, pred)),
                "accuracy": float((gold == pred).mean())}, None


register(TaskType("balanced", BalancedAdapter, defaults=(2, 4, 1e-3), metrics=("balanced_accuracy", "accuracy"),
                  main_metric="balanced_accuracy", readers=("classification",), predict=True))
'''


@pytest.fixture
def balanced_task(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "my_task_types.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    words = "fièvre toux douleur patient examen normal sévère".split()
    for split, n in (("train", 16), ("dev", 8), ("test", 8)):
        rows = []
        for k in range(n):
            label = "long" if k % 2 else "short"
            size = int(rng.integers(60, 120)) if label == "long" else int(rng.integers(3, 10))
            rows.append(f"{' '.join(rng.choice(words, size))}\t{label}\n")
        (tmp_path / f"{split}.tsv").write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
    task = tmp_path / "length.yaml"
    task.write_text("name: length\ntype: balanced\ntype_module: my_task_types\nreader: tsv\nlabels: [long, short]\n"
                    "data_root: .\nsplits: {train: train.tsv, dev: dev.tsv, test: test.tsv}\n", encoding="utf-8")
    yield task
    sys.modules.pop("my_task_types", None)
    tasktypes._TYPES.pop("balanced", None)


def test_a_new_task_type_runs_through_evaluate_and_predict(balanced_task: Path, tmp_path: Path,
                                                          minilm_dir: Path) -> None:
    model = tiny_bert(tmp_path / "tiny", minilm_dir)
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", f"tiny={model}", "--task-file", str(balanced_task), "--seeds", "1",
                 "--save-models", "--out", str(out)]) == 0
    run_dir = out / "tiny" / "length" / "seed-0"
    run = json.loads((run_dir / "run.json").read_text())
    # the table's entry decides the main metric, the metrics and the default budget
    assert run["task_type"] == "balanced" and run["main_metric"] == "balanced_accuracy"
    assert set(run["test"]) == {"balanced_accuracy", "accuracy"}
    assert run["config"]["training"]["epochs"] == 2 and run["config"]["training"]["learning_rate"] == 1e-3
    # the constant baseline is scored by the adapter's own metric: one class for all is 0.5 balanced accuracy
    assert run["baseline"]["test"]["balanced_accuracy"] == 0.5
    # predict serves the kept model, importing the module named in its config, and predicts what evaluate scored
    test = load_task(balanced_task).load_data()["test"]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": ex.id, "text": ex.text}) + "\n" for ex in test), encoding="utf-8")
    assert main(["predict", "--model", str(run_dir / "model"), "--input", str(src), "--out", str(tmp_path / "p")]) == 0
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "p" / "predictions.jsonl").read_text().splitlines())}
    scored = {r["id"]: r["pred"] for r in run["per_example"]}
    assert {i: r["labels"][0] for i, r in rows.items()} == scored
    assert (tmp_path / "p" / "predictions.csv").read_text().splitlines()[0] == "id,labels,p_long,p_short"
    # the type's own source is part of every run's fingerprint: editing it makes stored runs stale
    from longadapt.evaluation.fingerprint import run_fingerprint
    from longadapt.evaluation.finetune import RunLimits

    before = run_fingerprint(model, load_task(balanced_task), 0, RunLimits(), None)
    with open(tmp_path / "my_task_types.py", "a", encoding="utf-8") as fh:
        fh.write("# a change to the adapter\n")
    after = run_fingerprint(model, load_task(balanced_task), 0, RunLimits(), None)
    assert before["parts"]["type_module"] != after["parts"]["type_module"] and before["sha256"] != after["sha256"]


def test_task_type_errors_name_the_file_and_the_choices(tmp_path: Path) -> None:
    task = tmp_path / "t.yaml"
    task.write_text("type: sentiment\nreader: tsv\nlabels: [a, b]\nsplits: {train: a, dev: b, test: c}\n")
    with pytest.raises(LongAdaptError, match=r"t.yaml: type must be one of ner, pos, classification, multilabel, "
                                             r"regression, mcqa, not 'sentiment'"):
        load_task(task)
    task.write_text("type: x\ntype_module: no_such_types_module\nreader: tsv\nlabels: [a]\n"
                    "splits: {train: a, dev: b, test: c}\n")
    with pytest.raises(LongAdaptError, match="type_module 'no_such_types_module' cannot be imported"):
        load_task(task)
    with pytest.raises(LongAdaptError, match="main_metric one of its metrics"):
        tasktypes.register(tasktypes.TaskType("bad", object, (1, 1, 1e-3), ("a",), "b", ("classification",)))
    # every built-in type's adapter resolves, and predict serves exactly the declared ones
    assert all(isinstance(tasktypes.get(n).adapter_class(), type) for n in tasktypes.names())
    assert tasktypes.names(predict=True) == ("ner", "classification", "multilabel", "regression")
