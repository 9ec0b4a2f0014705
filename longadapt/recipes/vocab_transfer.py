"""Vocabulary arms of the ``continue`` strategy: a model with its old tokenizer becomes a model with a
new (target-language) tokenizer, its embedding rows initialised from the old ones.

Arms (:data:`ARMS`):

* ``keep`` -- nothing changes (the English tokenizer is kept, as DrLongformer did).
* ``replace`` -- a new tokenizer (e.g. from :func:`longadapt.tokenizers.train_tokenizer`).
  Every new row is initialised from the old embedding matrix:

  - special tokens map by role ([CLS] -> the old CLS, or BOS; [SEP] -> SEP or EOS; [PAD], [MASK],
    [UNK] -> the same role);
  - a token present in both vocabularies once word-start markers are canonicalised
    (:func:`canonical_token`: SentencePiece "▁x", byte-level "Ġx" and WordPiece "x" are word
    starts, "x" / "x" / "##x" continuations) is **copied**;
  - every other token is the **mean** of the old rows of the old tokenizer's pieces for its surface
    string, tokenised as a word start when the token is a word start and as a word continuation
    otherwise (occurrences counted, the unknown piece left out); an optional
    ``similarity_weights`` callable turns the plain mean into a weighted one (see below);
  - a token whose surface the old tokenizer cannot cover (e.g. a lone byte >= 0x80 for a WordPiece
    model), and the reserved ``[unusedN]`` pieces, get the mean of all old (non-special) rows
    (``unmapped`` / ``reserved`` in the report).

  The tied MLM decoder follows the embeddings (it is the same matrix) and the decoder bias follows
  the same rule (copied, mean of the pieces' biases, or the mean bias). ``init="random"`` is the
  baseline arm: same tokenizer and special-token mapping, every other row drawn from a normal
  distribution with the old rows' per-dimension mean and standard deviation.
* ``extend`` -- frequent target-language WORDS that the old tokenizer cuts into many pieces are
  added as whole words, their rows the mean of their old pieces. Whole words only, never inside a
  longer word: for WordPiece tokenizers as ``AddedToken(word, single_word=True, normalized=True)``;
  for BPE tokenizers (byte-level or SentencePiece-style) as a vocabulary entry "Ġword"/"▁word" of
  the BPE model with ``ignore_merges=True`` (a pre-token equal to a vocabulary entry is one
  token; no merge can build the new entry, so it never appears inside another word); for Unigram
  tokenizers as ``AddedToken(word, single_word=True)`` (which leaves a lone "▁" before the word:
  a warning says so). Words are written in the old tokenizer's normal form (an uncased WordPiece:
  lower case without accents). BPE entries carry the word-start marker, so a word that has none
  in running text (a byte-level model without ``add_prefix_space``: the first word of a text, a
  word after a line break) keeps its old pieces. ``ignore_merges`` could change how an old entry
  is segmented: such entries are counted in ``changed_segmentations`` (a warning says so). Every
  added word is checked: alone and between two words it is one token, and it is not found in the
  word with a letter added before or after; a tokenizer that fails (e.g. one without a
  pre-tokenizer) raises :class:`~longadapt.errors.LongAdaptError`. The extended tokenizer is a
  generic ``PreTrainedTokenizerFast`` with the old special tokens and ``model_max_length``.

``similarity_weights``: a callable ``(text, piece_ids, piece_texts) -> weights`` giving one
non-negative weight per old piece of a new token (``text``: the token's surface string without the
word-start marker; ``piece_texts``: the pieces' canonical surface strings). Shipped:
:func:`piece_length_weights` (each piece weighted by the characters it covers) and
:func:`vector_similarity_weights` (FOCUS-style: softmax of the cosine similarity between the new
token and each piece in an auxiliary embedding space the caller provides, e.g. fastText vectors
trained on the target corpus; no such vectors are trained here).

After ``replace`` or ``extend``, :func:`longadapt.recipes.calibration.calibrate_output_bias` re-fits the
decoder bias to the new tokenizer's token frequencies (the recipes do it by default): the transfer
copies the old model's preferences, and new tokens that share an old piece would otherwise each get
that piece's whole probability.

The model is changed in place (its embedding matrix resized) and returned in a
:class:`TransferResult` with the tokenizer to use and a :class:`TransferReport`.
"""

from __future__ import annotations

import collections
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import SCHEMES, SP_MARK, canonical_token  # noqa: F401
from longadapt.tokenizers.conventions import round_up, tokenizer_json
from longadapt.tokenizers.pieces import (  # noqa: F401  (the weights are re-exported: part of this API)
    OldPieces,
    SimilarityWeights,
    piece_length_weights,
    require_fast,
    vector_similarity_weights,
    word_start_scheme,
)
from longadapt.tokenizers.surgery import BYTE_PIECE, SPECIAL_ROLES, add_whole_words

logger = logging.getLogger(__name__)

_RESERVED = re.compile(r"^(?:\[unused\d+\]|<unused\d+>)$")
_ROLE_FALLBACK = {"cls": ("bos",), "bos": ("cls",), "sep": ("eos",), "eos": ("sep",)}



# ---------------------------------------------------------------------------------------------------
# report


@dataclass
class TransferReport:
    """What a vocabulary arm did.

    ``sources`` has one entry per row of the new embedding matrix: ``copy``, ``mean``, ``special``,
    ``unmapped``, ``reserved`` (reserved pieces and rows past the tokenizer), ``random`` (the
    random baseline) or ``old`` (extend: an old row kept). ``pieces`` maps each mean-initialised
    new id to the old piece ids it was averaged from, ``copied_from`` each copied or special new id
    to its old id.
    """

    arm: str
    old_scheme: str | None = None
    new_scheme: str | None = None
    old_vocab_size: int = 0
    new_vocab_size: int = 0
    old_rows: int = 0
    new_rows: int = 0
    copied: int = 0
    mean_initialised: int = 0
    single_piece: int = 0
    unmapped: int = 0
    special: int = 0
    reserved: int = 0
    random: int = 0
    kept: int = 0
    added_words: list[str] = field(default_factory=list)
    changed_segmentations: int = 0
    init: str = "transfer"
    similarity: str | None = None
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list, repr=False)
    pieces: dict[int, list[int]] = field(default_factory=dict, repr=False)
    copied_from: dict[int, int] = field(default_factory=dict, repr=False)

    def to_dict(self, examples: int = 10) -> dict[str, Any]:
        """A JSON-ready summary (per-row details left out, a few added words kept)."""
        out = asdict(self)
        for key in ("sources", "pieces", "copied_from"):
            out.pop(key)
        out["added_words_count"] = len(self.added_words)
        out["added_words"] = self.added_words[:examples]
        return out


@dataclass
class TransferResult:
    model: Any
    tokenizer: Any
    report: TransferReport


# ---------------------------------------------------------------------------------------------------
# writing the new rows


def _old_matrices(model) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool]:
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    if emb is None:
        raise LongAdaptError(f"{type(model).__name__} has no input embeddings to transfer")
    weight = emb.weight.detach().clone()
    bias = None
    out_weight = None
    tied = False
    if out is not None:
        tied = out.weight is emb.weight or out.weight.data_ptr() == emb.weight.data_ptr()
        if not tied:
            out_weight = out.weight.detach().clone()
        if getattr(out, "bias", None) is not None:
            bias = out.bias.detach().clone()
    return weight, out_weight, bias, tied


def _apply_rows(
    model, mix: torch.Tensor, new_rows: int, pad_id: int | None,
    old_weight: torch.Tensor, old_out: torch.Tensor | None, old_bias: torch.Tensor | None, tied: bool,
    base_rows: list[int], mean_fill: Sequence[int], random_fill: Sequence[int] = (), seed: int = 0,
) -> None:
    """Resize the model to ``new_rows`` and write ``mix @ old`` (a sparse (new_rows, old_rows) mixing
    matrix) into the embeddings, the untied decoder and the decoder bias. Rows in ``mean_fill`` get
    the mean of the old ``base_rows`` (embedding, decoder and bias alike); rows in ``random_fill``
    get a normal draw with the per-dimension mean and standard deviation of ``base_rows`` (and the
    mean bias)."""
    dtype = old_weight.dtype
    mix = mix.to(old_weight.device)
    generator = torch.Generator().manual_seed(seed)

    def build(old: torch.Tensor) -> torch.Tensor:
        new = torch.sparse.mm(mix, old.float())
        base = old[base_rows].float() if base_rows else old.float()
        mean = base.mean(0)
        std = base.std(0) if base.shape[0] > 1 else torch.zeros_like(mean)
        if mean_fill:
            new[list(mean_fill)] = mean.to(new.device)
        for row in random_fill:
            new[row] = (mean + std * torch.randn(mean.shape, generator=generator)).to(new.device)
        return new

    new_weight = build(old_weight).to(dtype)
    new_out = build(old_out).to(old_out.dtype) if old_out is not None else None
    new_bias = None
    if old_bias is not None:
        new_bias = torch.sparse.mm(mix, old_bias.float().unsqueeze(1)).squeeze(1)
        mean_bias = (old_bias[base_rows] if base_rows else old_bias).float().mean()
        fill_rows = [*mean_fill, *random_fill]
        if fill_rows:
            new_bias[fill_rows] = mean_bias
        new_bias = new_bias.to(old_bias.dtype)

    model.resize_token_embeddings(new_rows, mean_resizing=False)
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    with torch.no_grad():
        emb.weight.copy_(new_weight)
        if out is not None:
            if not tied and new_out is not None:
                out.weight.copy_(new_out)
            if new_bias is not None and getattr(out, "bias", None) is not None:
                out.bias.copy_(new_bias)
    if isinstance(emb, torch.nn.Embedding):
        emb.padding_idx = pad_id if (pad_id is not None and pad_id < new_rows) else None
    if tied:
        model.tie_weights()
        out = model.get_output_embeddings()
        if out.weight is not model.get_input_embeddings().weight:
            raise AssertionError("the MLM decoder is no longer tied to the embeddings after the transfer")
    model.config.vocab_size = new_rows


def _sparse(rows: list[int], cols: list[int], vals: list[float], shape: tuple[int, int]) -> torch.Tensor:
    if not rows:
        return torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), shape).coalesce()
    index = torch.tensor([rows, cols], dtype=torch.long)
    return torch.sparse_coo_tensor(
        index, torch.tensor(vals, dtype=torch.float32), shape, check_invariants=True
    ).coalesce()


def _update_config_ids(model, tokenizer) -> None:
    """The config's special ids become the new tokenizer's (``None`` where it has no such token)."""
    for attr in ("pad_token_id", "cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.config, attr, getattr(tokenizer, attr, None))


def _special_map(old_tok, new_tok) -> dict[int, int]:
    """new special id -> old id, by role (CLS<->BOS, SEP<->EOS as fallbacks), else by equal string."""
    mapping: dict[int, int] = {}
    for role in SPECIAL_ROLES:
        new_id = getattr(new_tok, f"{role}_token_id", None)
        if new_id is None or new_id in mapping:
            continue
        for candidate in (role, *_ROLE_FALLBACK.get(role, ())):
            old_id = getattr(old_tok, f"{candidate}_token_id", None)
            if old_id is not None:
                mapping[new_id] = old_id
                break
    old_vocab = old_tok.get_vocab()
    for token, new_id in zip(new_tok.all_special_tokens, new_tok.all_special_ids):
        if new_id not in mapping and token in old_vocab:
            mapping[new_id] = old_vocab[token]
    return mapping


def _check_sizes(model, old_tok) -> int:
    rows = model.get_input_embeddings().weight.shape[0]
    size = len(old_tok)
    if size > rows:
        raise LongAdaptError(
            f"the old tokenizer has {size} entries but the model only {rows} embedding rows: "
            "pass the tokenizer the model was trained with"
        )
    return rows


# ---------------------------------------------------------------------------------------------------
# the arms


def keep_vocabulary(model, tokenizer) -> TransferResult:
    """The ``keep`` arm: the same model and tokenizer."""
    tok = require_fast(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    report = TransferReport(
        arm="keep", old_scheme=word_start_scheme(tok), new_scheme=word_start_scheme(tok),
        old_vocab_size=len(tok), new_vocab_size=len(tok), old_rows=rows, new_rows=rows, kept=rows,
        sources=["old"] * rows,
    )
    return TransferResult(model, tokenizer, report)


def replace_vocabulary(
    model,
    old_tokenizer,
    new_tokenizer,
    *,
    similarity_weights: SimilarityWeights | None = None,
    init: str = "transfer",
    pad_to_multiple_of: int | None = 64,
    seed: int = 0,
) -> TransferResult:
    """The ``replace`` arm (see the module doc). ``init="random"`` gives the random baseline."""
    if init not in ("transfer", "random"):
        raise LongAdaptError(f"init={init!r} is unknown; use 'transfer' or 'random'")
    old_tok, new_tok = require_fast(old_tokenizer), require_fast(new_tokenizer)
    old_rows = _check_sizes(model, old_tok)
    pieces_of = OldPieces(old_tok)
    new_scheme = word_start_scheme(new_tok)
    new_prefix = tokenizer_json(new_tok)["model"].get("continuing_subword_prefix") or "##"
    old_weight, old_out, old_bias, tied = _old_matrices(model)

    old_special = set(old_tok.all_special_ids)
    old_canon: dict[str, int] = {}
    old_added = set(getattr(old_tok, "added_tokens_decoder", {}) or {})
    for token, idx in sorted(old_tok.get_vocab().items(), key=lambda kv: kv[1]):
        if idx in old_special or idx in old_added or _RESERVED.match(token):
            continue
        old_canon.setdefault(canonical_token(token, pieces_of.scheme, pieces_of.prefix or "##"), idx)
    normal_rows = [i for i in range(len(old_tok)) if i not in old_special]

    n_new = len(new_tok)
    new_rows = round_up(n_new, pad_to_multiple_of)
    id_to_token = {i: t for t, i in new_tok.get_vocab().items()}
    special = _special_map(old_tok, new_tok)
    new_special = set(new_tok.all_special_ids)
    report = TransferReport(
        arm="replace", old_scheme=pieces_of.scheme, new_scheme=new_scheme, old_vocab_size=len(old_tok),
        new_vocab_size=n_new, old_rows=old_rows, new_rows=new_rows, init=init,
        similarity=getattr(similarity_weights, "__name__", None) if similarity_weights else None,
        sources=[""] * new_rows,
    )
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []

    def set_copy(new_id: int, old_id: int, kind: str) -> None:
        rows.append(new_id)
        cols.append(old_id)
        vals.append(1.0)
        report.sources[new_id] = kind
        report.copied_from[new_id] = old_id

    starts: list[tuple[int, str]] = []
    continuations: list[tuple[int, str]] = []
    for new_id in range(new_rows):
        token = id_to_token.get(new_id)
        if token is None:
            report.sources[new_id] = "reserved"
            continue
        if new_id in new_special:
            if new_id in special:
                set_copy(new_id, special[new_id], "special")
            else:
                report.sources[new_id] = "unmapped"
            continue
        if _RESERVED.match(token):
            report.sources[new_id] = "reserved"
            continue
        if init == "random":
            report.sources[new_id] = "random"
            continue
        canon = canonical_token(token, new_scheme, new_prefix)
        if canon in old_canon:
            set_copy(new_id, old_canon[canon], "copy")
            continue
        if BYTE_PIECE.match(canon):
            data = bytes(int(h, 16) for h in re.findall(r"<0x([0-9A-Fa-f]{2})>", canon))
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                report.sources[new_id] = "unmapped"
                continue
            if not text.strip():
                report.sources[new_id] = "unmapped"
                continue
            continuations.append((new_id, text))
        elif canon.startswith(SP_MARK):
            text = canon[1:]
            if text.strip():
                starts.append((new_id, text))
            else:
                report.sources[new_id] = "unmapped"
        else:
            if canon.strip():
                continuations.append((new_id, canon))
            else:
                report.sources[new_id] = "unmapped"

    found: list[tuple[int, str, list[int]]] = []
    for (new_id, text), ids in zip(starts, pieces_of.word_start([t for _, t in starts])):
        found.append((new_id, text, ids))
    for new_id, text in continuations:
        found.append((new_id, text, pieces_of.continuation(text)))
    for new_id, text, ids in found:
        ids = [i for i in ids if i < old_rows]
        if not ids:
            report.sources[new_id] = "unmapped"
            continue
        weights = _weights(similarity_weights, text, ids, pieces_of)
        for i, w in zip(ids, weights):
            rows.append(new_id)
            cols.append(i)
            vals.append(w)
        report.sources[new_id] = "mean"
        report.pieces[new_id] = ids

    counts = collections.Counter(report.sources)
    report.copied, report.mean_initialised = counts["copy"], counts["mean"]
    report.special, report.unmapped, report.reserved, report.random = (
        counts["special"], counts["unmapped"], counts["reserved"], counts["random"],
    )
    report.single_piece = sum(1 for ids in report.pieces.values() if len(ids) == 1)

    mix = _sparse(rows, cols, vals, (new_rows, old_rows))
    pad_id = new_tok.pad_token_id
    _apply_rows(
        model, mix, new_rows, pad_id, old_weight, old_out, old_bias, tied, normal_rows,
        mean_fill=[i for i, kind in enumerate(report.sources) if kind in ("unmapped", "reserved")],
        random_fill=[i for i, kind in enumerate(report.sources) if kind == "random"], seed=seed,
    )
    _update_config_ids(model, new_tok)
    logger.info(
        "replace: %d rows (%d copied, %d mean of old pieces, %d special, %d unmapped, %d reserved, %d random)",
        new_rows, report.copied, report.mean_initialised, report.special, report.unmapped, report.reserved, report.random,
    )
    return TransferResult(model, new_tokenizer, report)


def _weights(similarity_weights: SimilarityWeights | None, text: str, ids: list[int], pieces_of: OldPieces) -> list[float]:
    """Normalised weights (sum 1) of the old pieces of one new token."""
    if similarity_weights is None:
        raw = [1.0] * len(ids)
    else:
        raw = [float(w) for w in similarity_weights(text, ids, [pieces_of.piece_text(i) for i in ids])]
        if len(raw) != len(ids) or any(not math.isfinite(w) or w < 0 for w in raw):
            raise LongAdaptError(
                f"similarity_weights returned {raw!r} for {text!r}: it must give one finite weight >= 0 per piece"
            )
        if sum(raw) <= 0:
            raw = [1.0] * len(ids)
    total = sum(raw)
    return [w / total for w in raw]


# ---------------------------------------------------------------------------------------------------
# extend


def select_words(
    texts: Iterable[str],
    language: Any,
    old_tokenizer,
    *,
    min_frequency: int = 20,
    min_pieces: int = 3,
    min_chars: int = 4,
    max_words: int | None = 5000,
    show_progress: bool = False,
) -> list[str]:
    """Frequent target-language words the old tokenizer cuts into ``>= min_pieces`` pieces, most
    frequent first. Words come from the language's spaCy rule-based tokenizer, letters only, at
    least ``min_chars`` long; words equal after the old tokenizer's normaliser (e.g. lower-casing
    and accent stripping of an uncased model) are counted together, written in that normalised
    form."""
    from longadapt.tokenizers.training import _language_pack

    pack = _language_pack(language)
    nlp = pack.word_tokenizer()
    pieces_of = OldPieces(old_tokenizer)
    counts: collections.Counter[str] = collections.Counter()
    from tqdm.auto import tqdm

    docs = (t for t in texts if t and t.strip())
    for doc in tqdm(nlp.pipe(docs, batch_size=64), desc="counting words", unit="doc", disable=not show_progress):
        for token in doc:
            word = token.text
            if token.is_alpha and len(word) >= min_chars:
                counts[word] += 1
    if not counts:
        raise LongAdaptError("no word found in the corpus: check that it is not empty and is in the right language")
    merged: collections.Counter[str] = collections.Counter()
    for word, n in counts.items():
        key = pieces_of.normalize(word).strip()
        if key.startswith(SP_MARK):
            key = key[1:]
        if key and key.isalpha():
            merged[key] += n
    candidates = [(w, n) for w, n in merged.items() if n >= min_frequency]
    candidates.sort(key=lambda wn: (-wn[1], wn[0]))
    segs = pieces_of.word_start([w for w, _ in candidates])
    chosen = [w for (w, _), ids in zip(candidates, segs) if len(ids) >= min_pieces]
    return chosen[:max_words] if max_words is not None else chosen


def extend_vocabulary(
    model,
    old_tokenizer,
    words: Sequence[str] | None = None,
    *,
    corpus: Iterable[str] | None = None,
    language: Any = None,
    min_frequency: int = 20,
    min_pieces: int = 3,
    min_chars: int = 4,
    max_words: int | None = 5000,
    similarity_weights: SimilarityWeights | None = None,
    pad_to_multiple_of: int | None = 64,
) -> TransferResult:
    """The ``extend`` arm (see the module doc): add ``words`` (or words selected from ``corpus`` with
    :func:`select_words`) to a copy of ``old_tokenizer`` as whole words; their rows are the mean of
    their old pieces, the old rows are kept."""
    old_tok = require_fast(old_tokenizer)
    old_rows = _check_sizes(model, old_tok)
    if words is None:
        if corpus is None or language is None:
            raise LongAdaptError("extend needs either words=[...] or corpus=... and language=...")
        words = select_words(
            corpus, language, old_tok, min_frequency=min_frequency, min_pieces=min_pieces,
            min_chars=min_chars, max_words=max_words,
        )
    pieces_of = OldPieces(old_tok)
    data = tokenizer_json(old_tok)
    # Dedupe on the normalised form; keep words that are not already one token.
    seen: set[str] = set()
    unique: list[str] = []
    for word in words:
        if not isinstance(word, str) or not word.strip() or any(c.isspace() for c in word.strip()):
            raise LongAdaptError(f"extend adds single words; {word!r} is not one")
        key = pieces_of.normalize(word.strip())
        key = key[1:] if key.startswith(SP_MARK) else key
        if key and key not in seen:
            seen.add(key)
            unique.append(key)
    segs = pieces_of.word_start(unique)
    todo = [(w, ids) for w, ids in zip(unique, segs) if len(ids) >= 2]
    skipped = len(unique) - len(todo)

    model_type = data["model"].get("type")
    notes: list[str] = []
    if skipped:
        notes.append(f"{skipped} words already one token (or unknown to the old tokenizer) were not added")
    new_tok, added_ids, changed = add_whole_words(old_tok, data, pieces_of.scheme, model_type, [w for w, _ in todo],
                                                  notes)

    old_weight, old_out, old_bias, tied = _old_matrices(model)
    normal_rows = [i for i in range(len(old_tok)) if i not in set(old_tok.all_special_ids)]
    n_new = len(new_tok)
    new_rows = max(old_rows, round_up(max(n_new, max(added_ids, default=-1) + 1), pad_to_multiple_of))
    report = TransferReport(
        arm="extend", old_scheme=pieces_of.scheme, new_scheme=pieces_of.scheme, old_vocab_size=len(old_tok),
        new_vocab_size=n_new, old_rows=old_rows, new_rows=new_rows, changed_segmentations=changed,
        similarity=getattr(similarity_weights, "__name__", None) if similarity_weights else None,
        notes=notes, sources=["reserved"] * new_rows,
    )
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    added = set(added_ids)
    for i in range(old_rows):
        if i not in added:
            rows.append(i)
            cols.append(i)
            vals.append(1.0)
            report.sources[i] = "old"
    for (word, ids), new_id in zip(todo, added_ids):
        ids = [i for i in ids if i < old_rows]
        for i, w in zip(ids, _weights(similarity_weights, word, ids, pieces_of)):
            rows.append(new_id)
            cols.append(i)
            vals.append(w)
        report.sources[new_id] = "mean"
        report.pieces[new_id] = ids
    counts = collections.Counter(report.sources)
    report.kept, report.mean_initialised, report.reserved = counts["old"], counts["mean"], counts["reserved"]
    report.single_piece = sum(1 for ids in report.pieces.values() if len(ids) == 1)
    report.added_words = [w for w, _ in todo]
    mix = _sparse(rows, cols, vals, (new_rows, old_rows))
    _apply_rows(
        model, mix, new_rows, new_tok.pad_token_id, old_weight, old_out, old_bias, tied, normal_rows,
        mean_fill=[i for i, kind in enumerate(report.sources) if kind == "reserved"],
    )
    _update_config_ids(model, new_tok)
    logger.info("extend: %d whole words added (%d rows in all)", len(todo), new_rows)
    return TransferResult(model, new_tok, report)


# ---------------------------------------------------------------------------------------------------
# one entry point


@dataclass(frozen=True)
class VocabArm:
    """One vocabulary arm: its function, what it needs, and how the model card and the recipe speak of it.

    * ``transfer(model, old_tokenizer, **options) -> TransferResult``;
    * ``new_tokenizer``: the arm takes a trained ``new_tokenizer=`` (replace);
    * ``edits``: the arm edits the tokenizer (it needs a fast one, and the MLM head's bias is re-fitted to
      the new token frequencies);
    * ``options_section``: the ``continue:`` recipe section whose keys go to the arm (``None``: none);
    * ``card``: the model card's tokenizer line.
    """

    name: str
    transfer: Callable[..., Any]
    new_tokenizer: bool
    edits: bool
    options_section: str | None
    card: str


def _keep(model, old_tok, new_tokenizer=None, **options: Any) -> TransferResult:
    if options or new_tokenizer is not None:
        raise LongAdaptError("the keep arm takes no new tokenizer and no options")
    return keep_vocabulary(model, old_tok)


def _replace(model, old_tok, new_tokenizer=None, **options: Any) -> TransferResult:
    from longadapt.tokenizers.loading import load_tokenizer

    if new_tokenizer is None:
        raise LongAdaptError("the replace arm needs new_tokenizer= (a tokenizer or a directory; see train_tokenizer)")
    return replace_vocabulary(model, old_tok, load_tokenizer(new_tokenizer), **options)


def _extend(model, old_tok, new_tokenizer=None, **options: Any) -> TransferResult:
    if new_tokenizer is not None:
        raise LongAdaptError("the extend arm builds its tokenizer from the old one; pass words= or corpus=/language=")
    return extend_vocabulary(model, old_tok, **options)


# the one table of vocabulary arms (the continue strategy and transfer_vocabulary read it)
VOCAB_ARMS: dict[str, VocabArm] = {
    "keep": VocabArm("keep", _keep, False, False, None, "the base model's (kept)"),
    "replace": VocabArm("replace", _replace, True, True, "tokenizer", "trained on the corpus, rows transferred"),
    "extend": VocabArm("extend", _extend, False, True, "extend", "the base model's, extended with whole words"),
}
ARMS = tuple(VOCAB_ARMS)


def transfer_vocabulary(
    model,
    old_tokenizer,
    arm: str,
    *,
    new_tokenizer=None,
    **options: Any,
) -> TransferResult:
    """Run one vocabulary arm: ``keep``, ``replace`` (needs ``new_tokenizer``: an object or a directory)
    or ``extend`` (needs ``words=`` or ``corpus=`` and ``language=``). ``options`` go to the arm's
    function (:func:`replace_vocabulary`, :func:`extend_vocabulary`)."""
    from longadapt.tokenizers.loading import load_tokenizer

    if arm not in VOCAB_ARMS:
        raise LongAdaptError(f"unknown vocabulary arm {arm!r}; use one of {', '.join(ARMS)}")
    # keep needs no tokenizers backend (a slow base tokenizer stays as it is); the other arms edit it
    old_tok = load_tokenizer(old_tokenizer, require_fast=VOCAB_ARMS[arm].edits, where="old tokenizer")
    return VOCAB_ARMS[arm].transfer(model, old_tok, new_tokenizer=new_tokenizer, **options)


__all__ = [
    "ARMS",
    "VOCAB_ARMS",
    "VocabArm",
    "SCHEMES",
    "OldPieces",
    "SimilarityWeights",
    "TransferReport",
    "TransferResult",
    "canonical_token",
    "extend_vocabulary",
    "keep_vocabulary",
    "piece_length_weights",
    "replace_vocabulary",
    "select_words",
    "transfer_vocabulary",
    "vector_similarity_weights",
]
