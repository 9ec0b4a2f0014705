"""Train a target-language subword tokenizer with the ``tokenizers`` library.

The result is a ``transformers`` fast tokenizer (a directory ``AutoTokenizer`` loads when saved) that
the core model, the MLM collator and ``word_ids()`` can use directly. Choices, and why:

* **No unknown pieces.** Either SentencePiece-style BPE/Unigram with *byte fallback* (the 256 pieces
  ``<0x00>``..``<0xFF>`` are in the vocabulary: a character never seen in training is written as
  its UTF-8 bytes; "µg", "m²", "≥", "½", "°C", "→" never become ``[UNK]``), or GPT-2-style
  *byte-level* BPE (BPE only; every string is a sequence of byte symbols).
* **NFC normalisation, never NFKC** (NFKC turns "m²" into "m2" and "µ" into "μ"). Lower-casing
  follows the language pack (off for fr/de/es).
* **Digits are split individually**: a piece holds at most one decimal digit ("37,5" -> "▁3" "7"
  "," "5"). A digit that starts a word keeps the word-start marker.
* **Word starts** are marked with "▁" (``metaspace``: BPE/Unigram with byte fallback) or "Ġ"
  (``byte_level``). Pre-tokens (the words of ``word_ids()``): space-separated chunks, with every
  digit, every run of punctuation and every line break cut off as a word of its own (byte-level:
  the GPT-2 rules, which also separate symbols). The normaliser puts a space after each line break
  (the decoder removes it), so the word after a line break is a word start like any other.
* **Special tokens, BERT convention**: ``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3,
  ``[MASK]`` = 4; the post-processor writes ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` (token
  types 0/1). ``[UNK]`` exists for the collator and for byte-level-free fallbacks but is never
  produced from text. With byte fallback the byte pieces take ids 5..260.
* **Vocabulary size rounded up to a multiple of 64** (``pad_to_multiple_of``). When the trainer
  stops short (a small corpus has fewer merges than asked for), the vocabulary is padded with
  reserved pieces ``[unused0]``, ``[unused1]``, ... at the end. They contain a digit, and digits are
  always split before the model sees them, so no text can ever produce them: they are spare rows
  (for added words later) and keep the size a multiple of 64. ``len(tokenizer)`` is always the
  rounded size.
* **Trained on sentences**, never whole documents: documents are split with the language pack's
  spaCy splitter (``sentences="rule"``: ``spacy.blank`` + the rule-based sentencizer, fast;
  ``"parser"``: the installed pipeline, e.g. fr_core_news_sm, slower), or at line breaks
  (``"lines"``). A sentence longer than ``max_sentence_chars`` is cut at spaces.

Two comparison settings exist for the vocabulary analysis (``longadapt.vocab.train.train_bpe`` uses
them, on sentences it already cut): ``pre_tokenization="words"`` (only the word-start marker splits:
digits, punctuation and line breaks stay inside words) and ``special_tokens="roberta"`` (``<pad>``,
``<unk>``, ``<s>``, ``</s>``, ``<mask>``, written ``<s> A </s>``), with ``when_short="shrink"`` (a corpus
too small for the size asked for gives the largest multiple of 64 it supports, trained again, instead
of reserved pieces that would count as unused vocabulary). ``model="wordpiece"`` trains a BERT-style
WordPiece ("##" continuations; word-start scheme ``wordpiece``): it has no byte fallback, so it needs
``byte_fallback=False`` and every character not seen in training becomes ``[UNK]`` (the training info
says so).

Decoding strips the word-start marker added before the first word, so ``decode(encode(x))`` gives
back ``x`` for NFC text without leading spaces (a leading space is not kept).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from longadapt.data.corpus import iter_texts
from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import round_up  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: Special tokens in id order (ids 0..4).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
#: The special-token conventions: tokens in id order (pad, unk, cls, sep, mask) and the template's
#: token types of the second segment.
SPECIAL_STYLES: dict[str, tuple[str, ...]] = {"bert": SPECIAL_TOKENS, "roberta": ("<pad>", "<unk>", "<s>", "</s>", "<mask>")}
#: Byte pieces of byte-fallback vocabularies.
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{i:02X}>" for i in range(256))
#: Name pattern of the reserved padding pieces (``[unused0]``, ...).
RESERVED_FORMAT = "[unused{}]"
METASPACE = "\u2581"
WORDPIECE_PREFIX = "##"
MODELS = ("bpe", "unigram", "wordpiece")
SENTENCE_MODES = ("rule", "parser", "lines")
PRE_TOKENIZATIONS = ("clinical", "words")
WHEN_SHORT = ("reserve", "shrink")
#: Name of the file written next to the tokenizer files: the training config and statistics.
TRAINING_INFO = "longadapt_tokenizer.json"


@dataclass
class TokenizerTrainingConfig:
    """How to train a tokenizer (every default lives here).

    vocab_size: wanted size including special, byte and reserved pieces; rounded UP to a multiple of
        ``pad_to_multiple_of``.
    model: ``"bpe"``, ``"unigram"`` or ``"wordpiece"`` (no byte fallback: needs ``byte_fallback=False``).
    byte_fallback: SentencePiece-style pieces with the 256 byte pieces (BPE or Unigram).
    byte_level: GPT-2-style byte-level BPE instead (``model="bpe"`` only); overrides
        ``byte_fallback``. One of the two is required: without either, clinical symbols unseen in
        training would become unknown.
    min_frequency: BPE: least frequency of a merged pair.
    limit_alphabet: BPE with byte fallback: most distinct characters kept as pieces (rarer ones go
        through the byte pieces); ``None`` keeps all.
    max_piece_length, shrinking_factor, n_sub_iterations: Unigram trainer settings.
    lowercase: lower-case the text; ``None`` follows the language pack.
    normalization: ``"NFC"``, ``"NFD"`` or ``"none"``; ``None`` follows the language pack (NFC).
        NFKC/NFKD are refused: they change clinical symbols.
    sentences: how documents are cut into training sentences: ``"rule"``, ``"parser"`` or ``"lines"``.
    max_sentence_chars: longer sentences are cut at spaces.
    max_documents, max_sentences: read at most this many documents / train on at most this many
        sentences (``None``: all).
    text_field: the text key of JSON Lines corpora.
    model_max_length: the tokenizer's ``model_max_length``.
    pad_to_multiple_of: the vocabulary size is a multiple of this.
    pre_tokenization: ``"clinical"`` (digits, runs of punctuation and line breaks are words of their
        own) or ``"words"`` (only white space splits; the analysis's comparison tokenizers).
    special_tokens: ``"bert"`` (``[PAD]`` ``[UNK]`` ``[CLS]`` ``[SEP]`` ``[MASK]``) or ``"roberta"``
        (``<pad>`` ``<unk>`` ``<s>`` ``</s>`` ``<mask>``).
    when_short: the corpus gives fewer pieces than asked: ``"reserve"`` pads with reserved pieces,
        ``"shrink"`` trains again at the largest multiple of ``pad_to_multiple_of`` it supports.
    unknown_token: declare the unknown piece as the tokenizer's unknown token. ``False`` (BPE only)
        leaves it an ordinary special piece, for tokenizers that can never produce it (byte fallback,
        byte-level): the analysis's comparison tokenizers, whose tables say "no unknown token".
    show_progress: progress bars (documents read, then the trainer's).
    """

    vocab_size: int = 32768
    model: str = "bpe"
    byte_fallback: bool = True
    byte_level: bool = False
    min_frequency: int = 2
    limit_alphabet: int | None = 1000
    max_piece_length: int = 16
    shrinking_factor: float = 0.75
    n_sub_iterations: int = 2
    lowercase: bool | None = None
    normalization: str | None = None
    sentences: str = "rule"
    max_sentence_chars: int = 2000
    max_documents: int | None = None
    max_sentences: int | None = None
    text_field: str = "text"
    model_max_length: int = 8192
    pad_to_multiple_of: int = 64
    pre_tokenization: str = "clinical"
    special_tokens: str = "bert"
    when_short: str = "reserve"
    unknown_token: bool = True
    show_progress: bool = False

    def validate(self) -> None:
        if self.model not in MODELS:
            raise LongAdaptError(f"tokenizer model {self.model!r} is unknown; use one of {', '.join(MODELS)}")
        if self.byte_level and self.model != "bpe":
            raise LongAdaptError("byte_level=True needs model='bpe'; for a Unigram model use byte_fallback=True")
        if self.model == "wordpiece":
            if self.byte_fallback or self.byte_level:
                raise LongAdaptError(
                    "a WordPiece model has no byte fallback: pass byte_fallback=False (characters not seen in "
                    "training then become [UNK]), or use model='bpe' / 'unigram' with byte_fallback=True"
                )
        elif not (self.byte_level or self.byte_fallback):
            raise LongAdaptError(
                "a tokenizer without byte_fallback or byte_level maps unseen characters (µ, ≥, ½, →) to [UNK]; "
                "set byte_fallback=True (BPE or Unigram) or byte_level=True (BPE)"
            )
        for name, allowed in (("pre_tokenization", PRE_TOKENIZATIONS), ("special_tokens", tuple(SPECIAL_STYLES)),
                              ("when_short", WHEN_SHORT)):
            if getattr(self, name) not in allowed:
                raise LongAdaptError(f"{name}={getattr(self, name)!r} is unknown; use one of {', '.join(allowed)}")
        if not self.unknown_token and self.model != "bpe":
            raise LongAdaptError(f"unknown_token=False needs model='bpe'; a {self.model} model needs its unknown token")
        if self.sentences not in SENTENCE_MODES:
            raise LongAdaptError(f"sentences={self.sentences!r} is unknown; use one of {', '.join(SENTENCE_MODES)}")
        if self.pad_to_multiple_of < 1:
            raise LongAdaptError("pad_to_multiple_of must be >= 1")
        if self.max_sentence_chars < 16:
            raise LongAdaptError("max_sentence_chars must be at least 16")
        floor = self.smallest_size
        if int(self.vocab_size) < floor:
            raise LongAdaptError(f"vocab_size {self.vocab_size} is too small; use at least {floor}")

    @property
    def scheme(self) -> str:
        """Word-start convention of the trained tokenizer: ``metaspace``, ``byte_level`` or ``wordpiece``."""
        if self.model == "wordpiece":
            return "wordpiece"
        return "byte_level" if self.byte_level else "metaspace"

    @property
    def specials(self) -> tuple[str, ...]:
        """The special tokens in id order: pad, unk, cls, sep, mask."""
        return SPECIAL_STYLES[self.special_tokens]

    @property
    def byte_pieces(self) -> bool:
        """Whether the 256 byte pieces are in the vocabulary (byte fallback, not byte-level)."""
        return bool(self.byte_fallback and not self.byte_level)

    @property
    def smallest_size(self) -> int:
        """Special pieces, the 256 bytes (byte fallback or byte-level alphabet) and one learned piece."""
        return len(SPECIAL_TOKENS) + (0 if self.model == "wordpiece" else 256) + 1




# ---------------------------------------------------------------------------------------------------
# reading documents and cutting sentences


def split_sentences(
    documents: Iterable[str], language: Any, mode: str = "rule", max_chars: int = 2000, batch_size: int = 32
) -> Iterator[str]:
    """Cut documents into sentences (see the module doc); empty ones are dropped and sentences
    longer than ``max_chars`` are cut at spaces."""
    if mode == "lines":
        for doc in documents:
            for line in doc.splitlines():
                yield from _cut(line, max_chars)
        return
    pack = _language_pack(language)
    nlp = pack.sentence_splitter(prefer_pipeline=(mode == "parser"))
    # Paragraphs first: line breaks always end a sentence, and spaCy sees shorter texts.
    paragraphs = (p for doc in documents for p in doc.splitlines() if p.strip())
    for parsed in nlp.pipe(paragraphs, batch_size=batch_size):
        for sent in parsed.sents:
            yield from _cut(sent.text, max_chars)


def _cut(text: str, max_chars: int) -> Iterator[str]:
    text = text.strip()
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        if cut <= 0:
            cut = max_chars
        head, text = text[:cut].strip(), text[cut:].strip()
        if head:
            yield head
    if text:
        yield text


def _language_pack(language: Any):
    from longadapt.languages import LanguagePack, load_language

    if isinstance(language, LanguagePack):
        return language
    if not isinstance(language, str):
        raise LongAdaptError(f"language must be a code such as 'fr' or a LanguagePack, got {type(language).__name__}")
    return load_language(language)


# ---------------------------------------------------------------------------------------------------
# building the tokenizer


def _normalizer(form: str, lowercase: bool, cfg: TokenizerTrainingConfig):
    from tokenizers import normalizers

    form = (form or "none").upper()
    if form in ("NFKC", "NFKD"):
        raise LongAdaptError(
            f"normalization {form} changes clinical symbols (m² -> m2, µ -> μ); use NFC (the default) or none"
        )
    steps = {"NFC": [normalizers.NFC()], "NFD": [normalizers.NFD()], "NONE": []}.get(form)
    if steps is None:
        raise LongAdaptError(f"normalization {form!r} is unknown; use NFC, NFD or none")
    if lowercase:
        steps.append(normalizers.Lowercase())
    if cfg.pre_tokenization == "clinical" and cfg.model != "wordpiece":
        # A word after a line break is a word start: a space is inserted after every "\n" (the decoder
        # removes exactly that space again), so "…\nSuite" gives "\n" "▁Suite", not "S" "u" "ite".
        steps.append(normalizers.Replace("\n", "\n "))
    return normalizers.Sequence(steps)


def _pre_tokenizer(cfg: TokenizerTrainingConfig):
    from tokenizers import Regex, pre_tokenizers

    words = cfg.pre_tokenization == "words"
    if cfg.model == "wordpiece":
        if words:
            return pre_tokenizers.BertPreTokenizer()  # white space and every punctuation character
        # white space, then every digit and every run of punctuation is a word of its own
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Split(Regex(r"\p{Nd}"), behavior="isolated"),
                pre_tokenizers.Split(Regex(r"\p{P}+"), behavior="isolated"),
            ]
        )
    if cfg.byte_level:
        if words:
            return pre_tokenizers.ByteLevel(add_prefix_space=False)
        # Byte-level first (it adds "Ġ" before the first word and maps bytes to symbols), then every
        # ASCII digit (the only digits that stay one symbol) becomes a pre-token of its own.
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                pre_tokenizers.Split(Regex("\u0120?[0-9]"), behavior="isolated"),
                pre_tokenizers.Split(Regex("[\u010a\u010d\u0109]+"), behavior="isolated"),  # \n \r \t
            ]
        )
    metaspace = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    if words:
        return metaspace
    # Metaspace first (spaces -> "▁", one pre-token per word), then digits, runs of punctuation
    # (a word-start marker stays on them: "▁(") and line breaks become pre-tokens of their own.
    return pre_tokenizers.Sequence(
        [
            metaspace,
            pre_tokenizers.Split(Regex(METASPACE + r"?\p{Nd}"), behavior="isolated"),
            pre_tokenizers.Split(Regex(METASPACE + r"?\p{P}+"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"[\r\n\t\f\v]+"), behavior="isolated"),
        ]
    )


def _decoder(cfg: TokenizerTrainingConfig):
    from tokenizers import decoders

    if cfg.model == "wordpiece":
        return decoders.WordPiece(prefix=WORDPIECE_PREFIX)
    if cfg.byte_level and cfg.pre_tokenization == "words":
        return decoders.ByteLevel()  # no prefix space was added
    # After Fuse the text is one string: remove the space the normaliser put after each line break,
    # then the space that marks the first word.
    tail = [decoders.Fuse()]
    if cfg.pre_tokenization == "clinical":
        tail.append(decoders.Replace("\n ", "\n"))
    tail.append(decoders.Strip(" ", 1, 0))
    if cfg.byte_level:
        return decoders.Sequence([decoders.ByteLevel(), *tail])
    return decoders.Sequence([decoders.Replace(METASPACE, " "), decoders.ByteFallback(), *tail])


def _post_processor(tok, cfg: TokenizerTrainingConfig):
    from tokenizers import processors

    _, _, cls, sep, _ = cfg.specials
    second = 1 if cfg.special_tokens == "bert" else 0  # RoBERTa-style models have no token types
    template = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:{second} {sep}:{second}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    if cfg.byte_level:
        return processors.Sequence([processors.ByteLevel(trim_offsets=True), template])
    return template


def _model_and_trainer(cfg: TokenizerTrainingConfig, target: int):
    from tokenizers import models, pre_tokenizers, trainers

    specials, unk = list(cfg.specials), cfg.specials[1]
    alphabet = {} if cfg.limit_alphabet is None else {"limit_alphabet": cfg.limit_alphabet}
    if cfg.model == "wordpiece":
        model = models.WordPiece(unk_token=unk, continuing_subword_prefix=WORDPIECE_PREFIX)
        trainer = trainers.WordPieceTrainer(
            vocab_size=target, min_frequency=cfg.min_frequency, special_tokens=specials,
            continuing_subword_prefix=WORDPIECE_PREFIX, show_progress=cfg.show_progress, **alphabet,
        )
    elif cfg.model == "bpe":
        model = models.BPE(unk_token=unk, byte_fallback=not cfg.byte_level)
        kwargs: dict[str, Any] = dict(
            vocab_size=target - (256 if cfg.byte_pieces else 0),
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            show_progress=cfg.show_progress,
        )
        if cfg.byte_level:
            kwargs["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
        else:
            kwargs.update(alphabet)
        trainer = trainers.BpeTrainer(**kwargs)
    else:
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(
            vocab_size=target - len(BYTE_TOKENS),
            special_tokens=specials,
            unk_token=unk,
            max_piece_length=cfg.max_piece_length,
            shrinking_factor=cfg.shrinking_factor,
            n_sub_iterations=cfg.n_sub_iterations,
            show_progress=cfg.show_progress,
        )
    return model, trainer


def _finalise_vocab(tok, cfg: TokenizerTrainingConfig, target: int):
    """Rewrite the trained model: specials first, byte pieces next (byte fallback), the learned
    pieces, then reserved pieces up to ``target``. Returns (tokenizer, counts)."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    model = data["model"]
    specials = cfg.specials
    counts: dict[str, int] = {}
    if model["type"] in ("BPE", "WordPiece"):
        learned = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if t not in specials]
        head = list(specials) + (list(BYTE_TOKENS) if cfg.byte_pieces else [])
        seen = set(head)
        learned = [t for t in learned if t not in seen]
        order = head + learned
        counts["learned"] = len(learned)
        counts["reserved"] = max(0, target - len(order))
        order += [RESERVED_FORMAT.format(i) for i in range(counts["reserved"])]
        model["vocab"] = {t: i for i, t in enumerate(order)}
        model["unk_token"] = specials[1] if cfg.unknown_token else None
        if model["type"] == "BPE":
            model["byte_fallback"] = cfg.byte_pieces
        size = len(order)
    elif model["type"] == "Unigram":
        pieces = [(p, s) for p, s in model["vocab"] if p not in specials]
        floor = min((s for _, s in pieces), default=0.0)
        learned = [(p, s) for p, s in pieces if p not in BYTE_TOKENS]
        order = [(t, 0.0) for t in specials] + [(b, 0.0) for b in BYTE_TOKENS] + learned
        counts["learned"] = len(learned)
        counts["reserved"] = max(0, target - len(order))
        order += [(RESERVED_FORMAT.format(i), floor - 10.0) for i in range(counts["reserved"])]
        model["vocab"] = [[p, s] for p, s in order]
        model["unk_id"] = 1
        model["byte_fallback"] = True
        size = len(order)
    else:  # pragma: no cover - only the trainers above are used
        raise AssertionError(model["type"])
    ids = {t: i for i, t in enumerate(specials)}
    for added in data.get("added_tokens", []):
        if added["content"] in ids:
            added["id"] = ids[added["content"]]
    counts["special"] = len(specials)
    counts["byte"] = 256 if cfg.byte_pieces else 0
    if size > target:  # the trainer gave more than asked (never expected): keep, but say so
        logger.warning("trained vocabulary has %d pieces, more than the %d asked for", size, target)
    return Tokenizer.from_str(json.dumps(data)), counts


def train_tokenizer(
    texts_or_corpus: str | Path | Iterable[str],
    language: Any,
    vocab_size: int | None = None,
    *,
    out_dir: str | Path | None = None,
    config: TokenizerTrainingConfig | None = None,
    **options: Any,
):
    """Train a tokenizer on a corpus of ``language`` and return it as a ``PreTrainedTokenizerFast``.

    ``texts_or_corpus``: documents (an iterable of strings) or a corpus file (see
    :func:`longadapt.data.corpus.iter_texts`).
    ``language``: a language code (``"fr"``) or a :class:`~longadapt.languages.LanguagePack`; ``None``
    for text of several languages (then ``sentences="lines"``, NFC unless ``normalization`` says
    otherwise, no lower-casing unless ``lowercase=True``).
    ``vocab_size`` and ``options`` override fields of ``config`` (a
    :class:`TokenizerTrainingConfig`), e.g. ``model="unigram"``, ``byte_level=True``,
    ``model_max_length=4096``, ``max_documents=500``.
    With ``out_dir`` the tokenizer is saved there (``AutoTokenizer.from_pretrained(out_dir)`` loads
    it) together with ``longadapt_tokenizer.json`` (the config and training statistics).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    cfg = dataclasses.replace(config) if config is not None else TokenizerTrainingConfig()
    fields = {f.name for f in dataclasses.fields(TokenizerTrainingConfig)}
    if vocab_size is not None:
        options["vocab_size"] = vocab_size
    for key, value in options.items():
        if key not in fields:
            raise LongAdaptError(f"unknown tokenizer option {key!r}; valid options are: {', '.join(sorted(fields))}")
        setattr(cfg, key, value)
    if cfg.byte_level:
        cfg.byte_fallback = False
    cfg.validate()
    pack = _language_pack(language) if language is not None else None
    if pack is None and cfg.sentences != "lines":
        raise LongAdaptError(
            "without a language the documents can only be cut at line breaks: pass sentences='lines', or a "
            "language code (fr, de, es, ...) for its sentence splitter"
        )
    lowercase = cfg.lowercase if cfg.lowercase is not None else (pack.lowercase if pack else False)
    normalization = cfg.normalization or (pack.normalization if pack else None) or "NFC"
    normalizer = _normalizer(normalization, lowercase, cfg)
    target = round_up(cfg.vocab_size, cfg.pad_to_multiple_of)
    if cfg.when_short == "shrink" and not isinstance(texts_or_corpus, (str, Path, list, tuple)):
        texts_or_corpus = list(texts_or_corpus)  # a second training reads the texts again
    code = pack.code if pack else "several languages"

    def train_once(size: int):
        stats = {"documents": 0, "sentences": 0, "characters": 0}

        def documents() -> Iterator[str]:
            from tqdm.auto import tqdm

            docs = iter_texts(texts_or_corpus, cfg.text_field, cfg.max_documents)
            for doc in tqdm(docs, desc="reading documents", unit="doc", disable=not cfg.show_progress):
                stats["documents"] += 1
                yield doc

        def sentences() -> Iterator[str]:
            for sent in split_sentences(documents(), pack, cfg.sentences, cfg.max_sentence_chars):
                if cfg.max_sentences is not None and stats["sentences"] >= cfg.max_sentences:
                    return
                stats["sentences"] += 1
                stats["characters"] += len(sent)
                yield sent

        model, trainer = _model_and_trainer(cfg, size)
        tok = Tokenizer(model)
        tok.normalizer = normalizer
        tok.pre_tokenizer = _pre_tokenizer(cfg)
        logger.info("training a %s tokenizer (%s, %d pieces) for %s", cfg.model, cfg.scheme, size, code)
        tok.train_from_iterator(sentences(), trainer=trainer)
        if stats["sentences"] == 0:
            raise LongAdaptError("the corpus is empty: no sentence to train the tokenizer on; check the path and text_field")
        tok, counts = _finalise_vocab(tok, cfg, size)
        return tok, counts, stats

    tok, counts, stats = train_once(target)
    if counts["reserved"] and cfg.when_short == "shrink":
        smaller = (target - counts["reserved"]) // cfg.pad_to_multiple_of * cfg.pad_to_multiple_of
        if cfg.smallest_size <= smaller < target:
            logger.warning("the text supports only %d vocabulary entries, not %d: training again with %d",
                           target - counts["reserved"], target, smaller)
            target = smaller
            tok, counts, stats = train_once(target)
    tok.normalizer = normalizer
    tok.pre_tokenizer = _pre_tokenizer(cfg)
    tok.decoder = _decoder(cfg)
    tok.post_processor = _post_processor(tok, cfg)
    if counts["reserved"]:
        logger.warning(
            "the corpus gave only %d learned pieces: the vocabulary is padded with %d reserved pieces to %d",
            counts["learned"], counts["reserved"], target,
        )
    pad, unk, cls, sep, mask = cfg.specials
    bos_eos = {"bos_token": cls, "eos_token": sep} if cfg.special_tokens == "roberta" else {}
    if cfg.unknown_token:
        bos_eos["unk_token"] = unk
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
        model_max_length=cfg.model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="right",
        **bos_eos,
    )
    if len(fast) != max(target, tok.get_vocab_size(with_added_tokens=True)):  # pragma: no cover - sanity
        raise AssertionError(f"tokenizer has {len(fast)} entries, expected {target}")
    info = {
        "language": pack.code if pack else None,
        "scheme": cfg.scheme,
        "normalization": normalization,
        "lowercase": lowercase,
        "special_tokens": list(cfg.specials),
        "vocab_size": len(fast),
        "pieces": counts,
        "corpus": dict(stats),
        "config": dataclasses.asdict(cfg),
    }
    if cfg.model == "wordpiece":
        info["unknown"] = "characters not seen in training become " + unk + " (WordPiece has no byte fallback)"
    fast.training_info = info  # type: ignore[attr-defined]
    logger.info(
        "tokenizer: %d pieces (%d learned, %d reserved) from %d sentences of %d documents",
        len(fast), counts["learned"], counts["reserved"], stats["sentences"], stats["documents"],
    )
    if out_dir is not None:
        save_tokenizer(fast, out_dir)
    return fast


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    """Save ``tokenizer`` atomically to ``out_dir`` (plus its training info when it has one)."""
    from longadapt.io import atomic_dir, atomic_write_json

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(str(tmp))
        info = getattr(tokenizer, "training_info", None)
        if info is not None:
            atomic_write_json(tmp / TRAINING_INFO, info)
    return out_dir


def fertility(tokenizer, texts: Iterable[str]) -> float:
    """Tokens per whitespace-separated word over ``texts`` (special tokens excluded): a quick
    measure for comparing tokenizers on the same text. ``longadapt.vocab`` has the full analysis."""
    words = tokens = 0
    for text in texts:
        words += len(text.split())
        tokens += len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if words == 0:
        raise LongAdaptError("fertility needs at least one word of text")
    return tokens / words


__all__ = [
    "BYTE_TOKENS",
    "SPECIAL_TOKENS",
    "TokenizerTrainingConfig",
    "fertility",
    "round_up",
    "save_tokenizer",
    "split_sentences",
    "train_tokenizer",
]
