"""WordPiece tokenization of a sentence-transformers folder, through the ``tokenizers`` package.

The folder's ``tokenizer.json`` carries its own padding and truncation settings (all-MiniLM-L6-v2's
pads every sentence to 128 tokens and truncates at 128). sentence-transformers ignores those: its
``Transformer`` module calls the tokenizer with ``truncation="longest_first"``, ``padding=True``
(pad to the longest sentence of the batch) and ``max_length=max_seq_length`` from
``sentence_bert_config.json``, lower-casing first when that file says ``do_lower_case``. This module
does the same, so the token ids equal those sentence-transformers feeds the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Batch", "Tokenizer"]


@dataclass(frozen=True)
class Batch:
    """Token ids of a batch of sentences, right-padded to the longest one.

    Attributes
    ----------
    input_ids : ndarray of int64, shape (batch, seq_len)
    attention_mask : ndarray of bool, shape (batch, seq_len)
        True for real tokens, False for padding.
    token_type_ids : ndarray of int64, shape (batch, seq_len)
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class Tokenizer:
    """The folder's ``tokenizer.json`` (loaded with ``tokenizers``), used as sentence-transformers uses it.

    Parameters
    ----------
    tokenizer_file : path to ``tokenizer.json``
    max_seq_length : int
        Sentences longer than this many tokens (special tokens included) are truncated.
    do_lower_case : bool
        Lower-case the text before tokenizing (sentence-transformers' ``do_lower_case``; the
        tokenizer's own normalizer may lower-case as well).
    pad_token_id : int
    """

    def __init__(self, tokenizer_file: str | Path, *, max_seq_length: int, do_lower_case: bool = False,
                 pad_token_id: int = 0) -> None:
        try:
            from tokenizers import Tokenizer as _HFTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("refquant.model needs the 'tokenizers' package: pip install 'refquant[model]'") from exc
        self._tok = _HFTokenizer.from_file(str(tokenizer_file))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=int(max_seq_length))
        self.max_seq_length = int(max_seq_length)
        self.do_lower_case = bool(do_lower_case)
        self.pad_token_id = int(pad_token_id)

    @classmethod
    def from_folder(cls, model_dir: str | Path, *, max_position_embeddings: int, pad_token_id: int = 0) -> "Tokenizer":
        """Build the tokenizer of a sentence-transformers folder.

        ``max_seq_length`` and ``do_lower_case`` come from ``sentence_bert_config.json`` when it
        exists; otherwise the length limit is the model's ``max_position_embeddings``.
        """
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no tokenizer.json")
        st_config: dict = {}
        st_path = model_dir / "sentence_bert_config.json"
        if st_path.is_file():
            st_config = json.loads(st_path.read_text())
        max_len = st_config.get("max_seq_length") or max_position_embeddings
        max_len = min(int(max_len), int(max_position_embeddings))
        return cls(path, max_seq_length=max_len, do_lower_case=bool(st_config.get("do_lower_case", False)),
                   pad_token_id=pad_token_id)

    def __call__(self, sentences: Sequence[str]) -> Batch:
        """Tokenize ``sentences`` into one right-padded batch."""
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("sentences must be a sequence of str")
        if len(sentences) == 0:
            raise ValueError("sentences is empty; give at least one sentence")
        texts = [s.lower() for s in sentences] if self.do_lower_case else list(sentences)
        encodings = self._tok.encode_batch(texts)
        seq_len = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), seq_len), self.pad_token_id, dtype=np.int64)
        types = np.zeros((len(texts), seq_len), dtype=np.int64)
        mask = np.zeros((len(texts), seq_len), dtype=bool)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            mask[row, :n] = True
        return Batch(ids, mask, types)
