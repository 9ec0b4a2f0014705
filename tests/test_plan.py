"""`longadapt plan`: the cost of a recipe before it runs, against a hand count of FLOPs, parameters counted
on a real model, every base recipe planned offline, and the messages of a plan that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longadapt.cli import main
from longadapt.errors import LongAdaptError
from longadapt.recipes.adapt import recipe_from_dict
from longadapt.recipes.plan import GPUS, USABLE_MEMORY, count_parameters, model_config, plan

TINY = {"strategy": "scratch", "preset": "tiny", "language": "fr",
        "scratch": {"tokenizer": {"vocab_size": 1000},
                    "model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 96, "local_attention": 16, "global_attn_every_n_layers": 2}},
        "phases": [{"name": "mlm", "max_length": 128, "steps": 10}],
        "train": {"tokens_per_step": 4096, "micro_batch_size": 2, "masking": {"mlm_probability": 0.3}}}


def test_flops_match_a_hand_count_and_parameters_a_real_model():
    cfg = recipe_from_dict(json.loads(json.dumps(TINY)))
    p = plan(cfg, gpus=2, gpu="l4", mfu=0.5, fsdp=True)
    # by hand, per token at 128 tokens: 2 layers of 2 x (4 x 64^2 + 3 x 64 x 96) projections and GeGLU MLP
    # = 69,632 each; attention 4 x 64 x 128 (the global layer) + 4 x 64 x 17 (the local one, window 16 + 1)
    encoder = 2 * 69_632 + 4 * 64 * 128 + 4 * 64 * 17
    assert encoder == 176_384
    head = 2 * 64 * 64 + 2 * 64 * 1024  # the vocabulary rounded up to a multiple of 64
    phase = p["phases"][0]
    assert phase["flops_per_token"] == pytest.approx(3 * encoder + 3 * 0.3 * head)
    assert phase["tokens"] == 10 * 4096
    peak, _ = GPUS["l4"]
    assert phase["hours"] == pytest.approx(10 * 4096 * phase["flops_per_token"] / (2 * peak * 0.5) / 3600)
    # parameters: the meta-device count equals a real model's, and FSDP divides the states by the GPUs
    import torch

    from longadapt.modeling import LongAdaptForMaskedLM

    real = sum(t.numel() for t in LongAdaptForMaskedLM(model_config(cfg)).parameters())
    assert p["parameters"] == real == count_parameters(model_config(cfg))
    assert phase["memory"]["weights_grads_optimizer"] == pytest.approx(16 * real / 2)
    assert torch.get_default_device().type == "cpu"  # the meta device did not leak


def test_every_base_recipe_plans_offline(capsys):
    for strategy, extra in (("convert", ["--base", "Dr-BERT/DrBERT-7GB"]), ("continue", []), ("scratch", [])):
        assert main(["plan", strategy, "--language", "fr", *extra]) == 0
        out = capsys.readouterr().out
        assert f"plan of {strategy}/base" in out and "GPU-hours" in out and "| fits |" in out
    assert main(["plan", "continue", "--gpus", "1", "--gpu", "l4", "continue.vocab_arm=replace"]) == 0
    assert "vocabulary 50368" in capsys.readouterr().out


def test_a_plan_that_does_not_fit_says_by_how_much(tmp_path: Path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "scratch", "--gpus", "1", "--gpu", "l4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    p = json.loads(out.read_text())
    extend = p["phases"][1]
    assert not extend["fits"] and extend["margin"] < 0
    assert f"short by {-extend['margin'] / 1e9:.1f} GB of {USABLE_MEMORY * GPUS['l4'][1] / 1e9:.1f} GB usable" in text
    assert "lower train.micro_batch_size" in text
    # gradient checkpointing keeps one layer's activations: the same phase then needs far less
    assert main(["plan", "scratch", "--gpus", "1", "--gpu", "l4", "--json", str(out),
                 "train.model.gradient_checkpointing=true"]) == 0
    assert json.loads(out.read_text())["phases"][1]["memory"]["activations"] < extend["memory"]["activations"] / 5


def test_bad_plan_input_is_refused(capsys):
    with pytest.raises(LongAdaptError, match="plan knows h100, h200, a100, l4"):
        plan(recipe_from_dict(json.loads(json.dumps(TINY))), gpu="v100")
    with pytest.raises(LongAdaptError, match="nothing to shard"):
        plan(recipe_from_dict(json.loads(json.dumps(TINY))), gpus=1, fsdp=True)
    assert main(["plan", "convert"]) == 2  # the base recipe names no base
    err = capsys.readouterr().err
    assert "needs a base model" in err and "--base" in err
    assert main(["plan", "convert", "--base", "no-such/model-anywhere"]) == 2  # never downloaded
    assert "neither a local model folder nor one of the known configurations" in capsys.readouterr().err
