"""Unit tests of the training engine's parts: schedules, parameter groups, metrics, data plan, config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from longadapt.errors import LongAdaptError
from longadapt.config import ConfigSource, yaml_key_lines
from longadapt.training.config import (
    ScheduleConfig,
    config_differences,
    config_to_dict,
    train_config_from_dict,
)
from longadapt.training.metrics import LossTally, masked_token_losses, positions_in_document
from longadapt.training.optim import build_scheduler, parameter_groups
from longadapt.training.batch_plan import BatchPlan, derive_accumulation, masking_seed


def _lrs(name: str, steps: int = 100, **kw) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, ScheduleConfig(name=name, **kw), steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_wsd_schedule_warms_up_holds_then_decays_with_1_sqrt():
    lr = _lrs("wsd", warmup_steps=10, decay_fraction=0.2, decay_shape="1-sqrt")
    assert lr[0] == 0.0 and lr[5] == pytest.approx(0.5)
    assert all(v == 1.0 for v in lr[10:80])  # stable phase
    # decay over steps 80..99: 1 - sqrt(progress)
    assert lr[85] == pytest.approx(1 - math.sqrt(5 / 20))
    assert lr[99] == pytest.approx(1 - math.sqrt(19 / 20))


def test_wsd_linear_decay_and_min_ratio():
    lr = _lrs("wsd", warmup_steps=0, decay_steps=50, decay_shape="linear", min_lr_ratio=0.1)
    assert lr[49] == 1.0
    assert lr[75] == pytest.approx(0.1 + 0.9 * (1 - 25 / 50))


def test_linear_cosine_constant_schedules():
    lin = _lrs("linear", warmup_steps=10)
    assert lin[10] == pytest.approx(1.0) and lin[55] == pytest.approx(0.5)
    cos = _lrs("cosine", warmup_steps=0)
    assert cos[50] == pytest.approx(0.5, abs=1e-6) and cos[25] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    const = _lrs("constant", warmup_steps=4)
    assert const[2] == pytest.approx(0.5) and const[4:] == [1.0] * 96


def test_weight_decay_excludes_biases_and_norm_weights():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "1.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["1.bias", "2.bias", "2.weight"]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_adamw_is_fused_on_cpu_and_steps_like_the_for_loop_reference():
    from longadapt.modeling.parameters import adamw

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    reference = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    reference.load_state_dict(model.state_dict())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    fused = adamw(parameter_groups(model, 0.1), 1e-2, betas=(0.9, 0.98), eps=1e-6)
    loop = torch.optim.AdamW(parameter_groups(reference, 0.1), lr=1e-2, betas=(0.9, 0.98), eps=1e-6, foreach=False)
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    x = torch.randint(0, 10, (3, 5))
    for _ in range(3):
        for m, opt in ((model, fused), (reference, loop)):
            m(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
        assert not torch.allclose(a, initial[name], atol=1e-4), name  # the steps moved every weight


def test_lr_multipliers_scale_matched_parameters_and_refuse_a_pattern_that_matches_nothing():
    """optimizer.lr_multipliers: the first matching glob pattern sets a parameter's rate (lr x multiplier);
    a multiplier of 0 leaves a parameter where it was (no step, no decay); the schedule scales every group
    alike; a typo is refused with the names it could have matched."""
    from longadapt.training.config import OptimizerConfig
    from longadapt.training.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4))
    model.head = torch.nn.Linear(4, 4)
    opt = build_optimizer(model, 1e-2, OptimizerConfig(weight_decay=0.1, lr_multipliers={"model.0.*": 0.0,
                                                                                           "model.*": 0.1}))
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates == {"head.weight": 1e-2, "head.bias": 1e-2, "model.1.weight": pytest.approx(1e-3),
                     "model.1.bias": pytest.approx(1e-3), "model.0.weight": 0.0}
    scheduler = build_scheduler(opt, ScheduleConfig(name="linear", warmup_steps=0), steps=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 10, (3, 5))
    model.head(model.model(x)).pow(2).mean().backward()
    opt.step()
    scheduler.step()
    assert torch.equal(model.model[0].weight, before["model.0.weight"])  # multiplier 0: untouched
    assert not torch.equal(model.head.weight, before["head.weight"])
    assert [g["lr"] / (g["lr_multiplier"] or 1) for g in opt.param_groups if g["lr_multiplier"]] == \
        pytest.approx([0.75e-2] * sum(1 for g in opt.param_groups if g["lr_multiplier"]))
    with pytest.raises(LongAdaptError, match=r"train.yaml:7: 'encoder.\*' matches no trained parameter.*model.0.weight"):
        build_optimizer(model, 1e-2, OptimizerConfig(lr_multipliers={"encoder.*": 0.1}), "train.yaml:7")
    with pytest.raises(LongAdaptError, match="must map glob patterns of parameter names to numbers >= 0"):
        train_config_from_dict({"optimizer": {"lr_multipliers": {"model.*": -1}}})


def test_adamw_keeps_torch_default_where_no_fused_kernel_applies():
    from longadapt.modeling.parameters import adamw

    double = torch.nn.Linear(3, 3).double()
    assert adamw([{"params": list(double.parameters())}], 1e-3).defaults["fused"] is None


def test_positions_restart_at_every_document():
    doc = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])
    assert positions_in_document(doc).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_masked_token_losses_sparse_equals_dense():
    torch.manual_seed(0)
    dense = torch.randn(2, 5, 7)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 0], labels[1, 4] = 3, 6, 0
    sparse = dense[labels != -100]
    a = masked_token_losses(dense, labels)
    b = masked_token_losses(sparse, labels)
    assert torch.allclose(a, b)
    ref = torch.nn.functional.cross_entropy(dense[1, 4][None], torch.tensor([0]))
    assert a[2].item() == pytest.approx(ref.item())
    with pytest.raises(ValueError):
        masked_token_losses(sparse[:2], labels)


def test_bits_per_byte_and_position_buckets():
    labels = torch.tensor([[5, -100, 7, 8]])
    losses = torch.tensor([math.log(2) * 4, math.log(2) * 2, math.log(2) * 6])  # 4, 2 and 6 bits
    token_bytes = torch.tensor([[2, 9, 2, 4]])
    doc = torch.tensor([[1, 1, 1, 1]])
    tally = LossTally(bucket_size=2, max_length=4)
    tally.add(losses, labels, token_bytes, doc)
    m = tally.metrics()
    assert m["bpb"] == pytest.approx(12 / 8)
    assert m["loss"] == pytest.approx(losses.mean().item())
    assert m["bpb_pos_0_1"] == pytest.approx(4 / 2)  # position 0 only (1 is not masked)
    assert m["bpb_pos_2_3"] == pytest.approx(8 / 6)
    assert m["masked_tokens_pos_2_3"] == 2


def test_batch_plan_splits_the_same_global_batch_over_processes():
    one = BatchPlan(num_rows=50, micro_batch_size=2, accumulation=4, num_processes=1, seed=3)
    two = BatchPlan(num_rows=50, micro_batch_size=2, accumulation=2, num_processes=2, seed=3)
    for step in (0, 5, 13):  # 13 crosses an epoch boundary (8 rows per step)
        global_one = sorted(r for m in range(4) for r in one.rows(step, 0, m))
        per_process = [[r for m in range(2) for r in two.rows(step, p, m)] for p in (0, 1)]
        assert sorted(per_process[0] + per_process[1]) == global_one
        assert per_process[0] != per_process[1]
    # an epoch visits every row once
    seen = [r for step in range(7) for m in range(4) for r in one.rows(step, 0, m)][:50]
    assert sorted(seen) == list(range(50))
    assert masking_seed(0, 1) != masking_seed(0, 2) and masking_seed(0, 1) == masking_seed(0, 1)


def test_derive_accumulation():
    assert derive_accumulation(65536, 1024, 8, 1) == 8
    assert derive_accumulation(65536, 1024, 8, 2) == 4
    assert derive_accumulation(1000, 1024, 8, 1) == 1


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("steps: 10\noptimizer:\n  weight_decay: 0.1\n  betaz: [0.9, 0.95]\n", encoding="utf-8")
    import yaml

    source = ConfigSource(path=cfg, lines=yaml_key_lines(cfg))
    with pytest.raises(LongAdaptError) as err:
        train_config_from_dict(yaml.safe_load(cfg.read_text()), source)
    msg = str(err.value)
    assert f"{cfg}:4" in msg and "optimizer.betaz" in msg and "optimizer.betas" in msg


def test_invalid_values_and_corpus_without_path():
    with pytest.raises(LongAdaptError, match="schedule.name"):
        train_config_from_dict({"schedule": {"name": "exponential"}})
    with pytest.raises(LongAdaptError, match="precision"):
        train_config_from_dict({"precision": "fp8"})
    with pytest.raises(LongAdaptError, match="missing required key.*path"):
        train_config_from_dict({"corpus": {"format": "jsonl"}})
    with pytest.raises(LongAdaptError, match="not both"):
        train_config_from_dict({"model": {"config": {"hidden_size": 8}, "path": "x"}})
    with pytest.raises(LongAdaptError, match=r"model.freeze must be a list of glob patterns .*got 'model\.\*'"):
        train_config_from_dict({"model": {"freeze": "model.*"}})


def test_config_differences_ignore_resume_and_bookkeeping_keys():
    a = config_to_dict(train_config_from_dict({"corpus": {"path": "a.jsonl"}, "lr": 1e-3}))
    b = config_to_dict(train_config_from_dict({"corpus": {"path": "a.jsonl"}, "lr": 1e-3, "resume": True,
                                               "save_every": 7, "output_dir": "../moved/run"}))
    c = config_to_dict(train_config_from_dict({"corpus": {"path": "b.jsonl"}, "lr": 2e-3}))
    assert config_differences(a, b) == []
    assert config_differences(a, c) == ["corpus.path", "lr"]


def test_checkpoints_are_due_by_steps_and_by_time_never_at_the_last_step():
    from types import SimpleNamespace

    from longadapt.training.engine import _checkpoint_due

    one = SimpleNamespace(num_processes=1)
    cfg = train_config_from_dict({"steps": 100, "save_every": 40, "save_every_minutes": 2.0})
    assert [s for s in range(1, 101) if _checkpoint_due(cfg, s, 0.0, one)] == [40, 80]
    assert _checkpoint_due(cfg, 7, 121.0, one) and not _checkpoint_due(cfg, 7, 119.0, one)
    assert not _checkpoint_due(cfg, 100, 1e6, one)
    off = train_config_from_dict({"steps": 10, "save_every": 0})
    assert not any(_checkpoint_due(off, s, 1e6, one) for s in range(1, 11))
    with pytest.raises(LongAdaptError, match="save_every_minutes must be >= 0"):
        train_config_from_dict({"save_every_minutes": -1})


def test_relative_corpus_paths_resolve_against_config_folder_then_data_root(tmp_path, monkeypatch):
    from longadapt.data import CorpusSpec
    from longadapt.training.resolve import resolve_corpus

    (tmp_path / "cfg").mkdir()
    (tmp_path / "root" / "corpora").mkdir(parents=True)
    (tmp_path / "root" / "corpora" / "x.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "cfg" / "local.jsonl").write_text('{"text": "b"}\n')
    source = ConfigSource(path=tmp_path / "cfg" / "run.yaml", lines={"corpus.path": 7})
    monkeypatch.setenv("LONGADAPT_DATA", str(tmp_path / "root"))
    assert resolve_corpus(CorpusSpec(path="local.jsonl"), source).path == str(tmp_path / "cfg" / "local.jsonl")
    assert resolve_corpus(CorpusSpec(path="corpora/x.jsonl"), source).path == str(
        tmp_path / "root" / "corpora" / "x.jsonl"
    )
    assert resolve_corpus(CorpusSpec(path="corpora/*.jsonl"), source).path == str(
        tmp_path / "root" / "corpora" / "*.jsonl"
    )
    with pytest.raises(LongAdaptError) as err:
        resolve_corpus(CorpusSpec(path="corpora/missing.jsonl"), source)
    assert f"{tmp_path / 'cfg' / 'run.yaml'}:7" in str(err.value) and "root" in str(err.value)


def test_one_data_root_variable_for_corpora_tasks_and_vocab(tmp_path, monkeypatch, caplog):
    from longadapt import dataroot
    from longadapt.evaluation.tasks import default_data_root
    from longadapt.training.resolve import data_root as training_root

    monkeypatch.setenv("LONGADAPT_DATA", str(tmp_path / "a"))
    monkeypatch.setenv("LONGADAPT_SHARED_DATA", str(tmp_path / "b"))
    assert training_root() == default_data_root() == dataroot.data_root() == tmp_path / "a"
    assert default_data_root(tmp_path / "cli") == tmp_path / "cli"  # --data-root wins
    monkeypatch.delenv("LONGADAPT_DATA")
    monkeypatch.setattr(dataroot, "_warned", [])
    caplog.set_level("WARNING", logger="longadapt.dataroot")
    assert dataroot.data_root() == tmp_path / "b"  # the old name still works, and says so
    assert "LONGADAPT_SHARED_DATA is the old name of LONGADAPT_DATA" in caplog.text
    monkeypatch.delenv("LONGADAPT_SHARED_DATA")
    assert dataroot.data_root() == (dataroot.BUNDLED if dataroot.BUNDLED.is_dir() else None)


@pytest.mark.parametrize("data, message", [
    ({"lr": "fast"}, "lr must be a number (e.g. 3e-3), got 'fast'"),
    ({"steps": "abc"}, "steps must be a whole number, got 'abc'"),
    ({"steps": "many"}, "steps must be a whole number, got 'many'"),
    ({"seed": "abc"}, "seed must be a whole number, got 'abc'"),
    ({"micro_batch_size": 2.5}, "micro_batch_size must be a whole number, got 2.5"),
    ({"tensorboard": "maybe"}, "tensorboard must be true or false, got 'maybe'"),
    ({"schedule": {"warmup_steps": "x"}}, "warmup_steps must be a whole number, got 'x'"),
])
def test_every_field_is_typed_at_load(data, message):
    with pytest.raises(LongAdaptError) as info:
        train_config_from_dict(data)
    assert message in str(info.value)


def test_numbers_written_without_a_dot_are_numbers():
    """PyYAML reads ``3e-3`` as a string; a config field typed float reads it as the number."""
    import yaml

    cfg = train_config_from_dict(yaml.safe_load("lr: 3e-3\nsteps: '12'\ntensorboard: 'false'\n"))
    assert (cfg.lr, cfg.steps, cfg.tensorboard) == (0.003, 12, False)


def test_overrides_stand_anywhere_after_the_command(monkeypatch, capsys):
    import longadapt.recipes.cli as recipes_cli
    import longadapt.training.cli as training_cli
    from longadapt.cli import main

    seen = []
    monkeypatch.setattr(recipes_cli, "run_adapt", lambda args: seen.append((args.overrides, args.language)) or 0)
    monkeypatch.setattr(training_cli, "run_pretrain", lambda args: seen.append((args.overrides, args.resume)) or 0)
    assert main(["adapt", "continue", "--language", "fr", "continue.vocab_arm=replace", "train.lr=1e-3"]) == 0
    assert main(["pretrain", "x.yaml", "--resume", "steps=3", "output_dir=runs/b"]) == 0
    assert seen == [(["continue.vocab_arm=replace", "train.lr=1e-3"], "fr"), (["steps=3", "output_dir=runs/b"], True)]
    with pytest.raises(SystemExit):
        main(["adapt", "continue", "--bogus"])
    err = capsys.readouterr().err
    # the command's own usage and name, not the top-level one
    assert "unrecognized arguments: --bogus" in err and err.startswith("usage: longadapt adapt ")
    assert "longadapt adapt: error:" in err


def test_an_fsdp_launch_on_the_cpu_says_why_it_trains_without_sharding(monkeypatch, caplog):
    """accelerate enables FSDP only on accelerators: an FSDP config on the CPU is named, with that reason."""
    import logging

    from accelerate.state import AcceleratorState

    from longadapt.training.model_setup import _make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    AcceleratorState._reset_state(True)
    try:
        with caplog.at_level(logging.WARNING):
            accelerator = _make_accelerator(train_config_from_dict({"steps": 1, "precision": "fp32"}))
        assert not accelerator.is_fsdp2 and accelerator.distributed_type == "NO"
    finally:
        AcceleratorState._reset_state(True)
    assert "enables FSDP only on GPUs and other accelerators (never on the CPU, nor on one process)" in caplog.text
