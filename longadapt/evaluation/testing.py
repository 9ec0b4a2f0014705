"""Tiny randomly initialised models for smoke tests of the evaluation pipeline (seconds on a CPU).

``tiny_bert(out, tokenizer_dir)`` copies a WordPiece tokenizer and writes a 2-layer BERT;
``tiny_roberta(out, texts)`` trains a small byte-level BPE tokenizer on ``texts`` and writes a
2-layer RoBERTa (the byte-level case that needs ``add_prefix_space`` for pre-split words).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def tiny_bert(out: str | Path, tokenizer_dir: str | Path, max_position_embeddings: int = 128,
              hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.model_max_length = max_position_embeddings
    tok.save_pretrained(out)
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size,
                        max_position_embeddings=max_position_embeddings, pad_token_id=tok.pad_token_id or 0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    return out


def tiny_roberta(out: str | Path, texts: Iterable[str], vocab_size: int = 400, max_length: int = 128,
                 hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    out = Path(out)
    bpe = ByteLevelBPETokenizer()  # add_prefix_space=False, as RoBERTa's own tokenizer
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>",
                                  sep_token="</s>", model_max_length=max_length)
    tok.save_pretrained(out)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers,
                           num_attention_heads=2, intermediate_size=2 * hidden_size,
                           max_position_embeddings=max_length + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           type_vocab_size=1)
    torch.manual_seed(seed)
    RobertaModel(config).save_pretrained(out)
    return out
