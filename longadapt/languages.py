"""Language packs: everything longadapt knows about a language comes from languages/<code>.yaml.

Adding a language means adding a YAML file; no code change. The packs live in the repository's
``languages/`` folder (override with the LONGADAPT_LANGUAGES environment variable).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import ConfigSource, from_dict, load_yaml, yaml_key_lines
from longadapt.errors import LongAdaptError


def languages_dir() -> Path:
    env = os.environ.get("LONGADAPT_LANGUAGES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "languages"


@dataclass
class CorpusSource:
    """A default corpus: a local path (relative to the data root) and/or a hub id."""

    path: str | None = None
    hub_id: str | None = None
    text_field: str = "text"
    description: str = ""


@dataclass
class LanguagePack:
    code: str
    name: str
    # used when installed, e.g. fr_core_news_sm
    spacy_pipeline: str | None = None
    # language code for spacy.blank(); defaults to `code`
    spacy_blank: str | None = None
    normalization: str = "NFC"
    lowercase: bool = False
    corpora: list[CorpusSource] = field(default_factory=list)
    eval_tasks: list[str] = field(default_factory=list)
    # per recipe preset, defaults merged under every recipe of this language (the recipe's own values win),
    # e.g. {"tiny": {"train": {"data": {"validation_fraction": 0.1}}}} for a small corpus
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def sentence_splitter(self, prefer_pipeline: bool = True):
        """A spaCy Language that splits sentences: the named pipeline when installed
        (parser-based sentences), else ``spacy.blank(lang)`` with a rule-based sentencizer."""
        return _nlp(self.code, self.spacy_pipeline if prefer_pipeline else None, self.spacy_blank or self.code, True)

    def word_tokenizer(self):
        """spaCy's rule-based tokenizer for the language (``spacy.blank``; no model download)."""
        return _nlp(self.code, None, self.spacy_blank or self.code, False)


@functools.lru_cache(maxsize=32)
def _nlp(code: str, pipeline: str | None, blank: str, sentences: bool):
    import spacy

    if pipeline:
        try:
            nlp = spacy.load(pipeline, exclude=["ner", "lemmatizer", "attribute_ruler", "tagger", "morphologizer"])
            if sentences and not nlp.has_pipe("parser") and not nlp.has_pipe("senter"):
                nlp.add_pipe("sentencizer")
            nlp.max_length = 10**8
            return nlp
        except OSError:
            pass  # pipeline not installed: fall back to the rule-based tokenizer
    nlp = spacy.blank(blank)
    if sentences:
        nlp.add_pipe("sentencizer")
    nlp.max_length = 10**8
    return nlp


def available_languages() -> list[str]:
    return sorted(p.stem for p in languages_dir().glob("*.yaml"))


def language_file(code: str) -> Path:
    """The language pack file of ``code``: ``languages/<code>.yaml``."""
    return languages_dir() / f"{code}.yaml"


def load_language(code: str) -> LanguagePack:
    path = language_file(code)
    if not path.is_file():
        known = ", ".join(available_languages()) or "none"
        raise LongAdaptError(
            f"unknown language {code!r}: no {path}. Known languages: {known}. "
            f"Add a language by writing languages/{code}.yaml."
        )
    data = load_yaml(path)
    data.setdefault("code", code)
    if data["code"] != code:
        raise LongAdaptError(f"{path}: field 'code' is {data['code']!r} but the file is named {code}.yaml")
    source = ConfigSource(path=path, lines=yaml_key_lines(path))
    data["corpora"] = [from_dict(CorpusSource, c, source, f"corpora.{i}.") for i, c in enumerate(data.get("corpora", []))]
    pack = from_dict(LanguagePack, data, source)
    if not isinstance(pack.recipes, dict) or not all(isinstance(v, dict) for v in pack.recipes.values()):
        raise LongAdaptError(f"{path}: recipes must map a preset name (tiny, base) to recipe defaults")
    return pack
