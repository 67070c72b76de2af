"""A Hugging Face byte-level BPE tokenizer (``tokenizer.json``) as llama.cpp's ``tokenizer.ggml.*`` metadata.

Sources, ggml-org/llama.cpp as vendored by llama-cpp-python 0.3.36:

- ``conversion/base.py``: ``TextModel.get_vocab_base`` (token list and token types),
  ``_set_vocab_gpt2`` (``tokenizer.ggml.model = "gpt2"``), ``does_token_look_special``;
- ``gguf-py/gguf/vocab.py``: ``SpecialVocab`` (merges in either ``tokenizer.json`` format,
  special token ids from ``tokenizer_config.json`` then ``config.json``, ``add_bos`` /
  ``add_eos`` from ``tokenizer_config.json`` and the ``TemplateProcessing`` post-processor);
- ``src/llama-vocab.cpp``: ``llama_vocab::impl::load`` (what the loader requires: the token
  list, merges for ``gpt2``, a known ``tokenizer.ggml.pre``), ``LLAMA_VOCAB_PRE_TYPE_GPT2``'s
  regex ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)``.

Which tokenizers. Only GPT-2's scheme is converted: a BPE model without byte fallback, no
normalizer, and a ``ByteLevel`` pre-tokenizer with ``use_regex`` (GPT-2's split regex, the
one llama.cpp's ``"gpt-2"`` pre-tokenizer applies). The converter identifies the
pre-tokenizer by hashing the tokens of a probe text and knows only published models' hashes;
refquant reads the pre-tokenizer's definition instead, so a tokenizer trained with
``tokenizers`` (refquant-tiny-llama's) maps to ``"gpt-2"`` as well. Anything else
(SentencePiece, WordPiece, Llama-3's regex) is a :class:`ValueError` naming what differs.

Deliberate difference: the converter writes ``tokenizer.ggml.add_bos_token`` only when the
tokenizer config or post-processor mentions it; here it is always written (false when nothing
adds a BOS token), so llama.cpp's ``llama_tokenize(..., add_special=True)`` adds exactly
what the Hugging Face tokenizer's ``encode`` adds, whatever llama.cpp's default for the
pre-tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["TOKEN_TYPE", "tokenizer_metadata"]

#: llama.cpp ``llama_token_type`` (gguf-py ``TokenType``)
TOKEN_TYPE = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5, "byte": 6}
# SpecialVocab.special_token_types, with the gguf key each one is written under
_SPECIAL_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                 "sep": "seperator_token_id", "pad": "padding_token_id", "cls": "cls_token_id",
                 "mask": "mask_token_id"}


def tokenizer_metadata(folder: str | Path, vocab_size: int) -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` keys of the model folder's ``tokenizer.json``.

    Parameters
    ----------
    folder : path
        A Hugging Face model folder holding ``tokenizer.json`` (and optionally
        ``tokenizer_config.json`` and ``config.json`` for the special tokens).
    vocab_size : int
        ``config.json``'s ``vocab_size``: the token list has exactly this many entries (ids the
        tokenizer lacks become ``[PAD{i}]`` of type UNUSED, as the converter writes them).

    Returns
    -------
    dict
        gguf key -> :class:`refquant.io.gguf_metadata.GGUFValue` (strings, INT32 token types,
        UINT32 ids, BOOL flags), in the converter's order.

    Raises
    ------
    FileNotFoundError
        No ``tokenizer.json`` in ``folder``.
    ValueError
        A tokenizer other than GPT-2-style byte-level BPE (what differs is named), or a token
        id at or above ``vocab_size``.
    """
    from refquant.io.gguf_metadata import GGUFValue, GGUFValueType as T

    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no tokenizer.json")
    tok = json.loads(path.read_text(encoding="utf-8"))
    _check_gpt2_bpe(tok, path)
    tokens, types = _token_list(tok, int(vocab_size), path)
    tok_config = _read_json(folder / "tokenizer_config.json")
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": GGUFValue(tokens, T.ARRAY, item_type=T.STRING),
        "tokenizer.ggml.token_type": GGUFValue(types, T.ARRAY, item_type=T.INT32),
        "tokenizer.ggml.merges": GGUFValue(_merges(tok["model"]["merges"], path), T.ARRAY, item_type=T.STRING),
    }
    for typ, tid in _special_ids(tok, tok_config, _read_json(folder / "config.json"), len(tokens)).items():
        meta[f"tokenizer.ggml.{_SPECIAL_KEYS[typ]}"] = GGUFValue(tid, T.UINT32)
    for typ, flag in _adds_special(tok, tok_config).items():
        meta[f"tokenizer.ggml.add_{typ}_token"] = GGUFValue(flag, T.BOOL)
    if isinstance(tok_config.get("chat_template"), str):
        meta["tokenizer.chat_template"] = tok_config["chat_template"]
    return meta


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _check_gpt2_bpe(tok: dict[str, Any], path: Path) -> None:
    """ValueError unless ``tok`` tokenizes as GPT-2 does (see the module docstring)."""
    model, pre = tok.get("model") or {}, tok.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"model.type={model.get('type')!r} (need 'BPE')")
    if model.get("byte_fallback") or model.get("ignore_merges"):
        problems.append("model.byte_fallback / model.ignore_merges set (GPT-2's BPE has neither)")
    if tok.get("normalizer") is not None:
        problems.append(f"normalizer={tok['normalizer'].get('type')!r} (GPT-2 has none)")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        problems.append(f"pre_tokenizer={pre!r} (need ByteLevel with use_regex and no add_prefix_space)")
    if problems:
        raise ValueError(f"{path}: refquant converts only GPT-2-style byte-level BPE tokenizers to llama.cpp "
                         f"metadata; this one has {'; '.join(problems)}")


def _looks_special(token: str) -> bool:
    """The converter's ``does_token_look_special``: added tokens it marks CONTROL although not special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def _token_list(tok: dict[str, Any], vocab_size: int, path: Path) -> tuple[list[str], list[int]]:
    """Tokens by id and their llama.cpp types (``get_vocab_base``).

    Added tokens are CONTROL when special (or looking special), else USER_DEFINED; a
    non-normalized added token is kept as written (the converter round-trips it through the
    tokenizer, which for a byte-level BPE without normalizer returns it unchanged).
    """
    by_id: dict[int, str] = {int(i): t for t, i in tok["model"]["vocab"].items()}
    added = {int(a["id"]): a for a in tok.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    if by_id and max(by_id) >= vocab_size:
        raise ValueError(f"{path}: token id {max(by_id)} is not below config.json vocab_size={vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_TYPE["unused"])
        elif i in added:
            tokens.append(by_id[i])
            special = added[i].get("special") or _looks_special(by_id[i])
            types.append(TOKEN_TYPE["control" if special else "user_defined"])
        else:
            tokens.append(by_id[i])
            types.append(TOKEN_TYPE["normal"])
    return tokens, types


def _merges(merges: list[Any], path: Path) -> list[str]:
    """Merges as llama.cpp reads them: ``"left right"``, one string each.

    ``tokenizers`` >= 0.20 stores ``[left, right]`` pairs; a space inside a part (possible
    only in that format) is written as U+0120, ``chr(ord(" ") + 256)``, as ``SpecialVocab`` does.
    """
    out = []
    for m in merges:
        if isinstance(m, str):
            out.append(m)
        elif isinstance(m, (list, tuple)) and len(m) == 2 and all(isinstance(p, str) for p in m):
            out.append(" ".join(p.replace(" ", chr(ord(" ") + 256)) for p in m))
        else:
            raise ValueError(f"{path}: model.merges entry {m!r} is neither 'a b' nor ['a', 'b']")
    return out


def _special_ids(tok: dict[str, Any], tok_config: dict[str, Any], config: dict[str, Any], n_vocab: int
                 ) -> dict[str, int]:
    """Special token ids: ``tokenizer_config.json``'s ``{typ}_token`` content looked up among the
    added tokens first, then ``config.json``'s ``{typ}_token_id`` (``SpecialVocab._load``);
    the first source that names a valid id wins."""
    ids: dict[str, int] = {}
    added = tok.get("added_tokens", [])
    for typ in _SPECIAL_KEYS:
        entry = tok_config.get(f"{typ}_token")
        content = entry.get("content") if isinstance(entry, dict) else entry
        if isinstance(content, str):
            tid = next((a.get("id") for a in added if a.get("content") == content), None)
            if isinstance(tid, int) and 0 <= tid < n_vocab:
                ids[typ] = tid
    for typ in _SPECIAL_KEYS:
        tid = config.get(f"{typ}_token_id")
        if typ not in ids and isinstance(tid, int) and 0 <= tid < n_vocab:
            ids[typ] = tid
    return ids


def _adds_special(tok: dict[str, Any], tok_config: dict[str, Any]) -> dict[str, bool]:
    """Whether ``encode`` adds BOS / EOS: a ``TemplateProcessing`` post-processor whose single-sequence
    template starts / ends with a special token, else ``tokenizer_config.json``'s
    ``add_bos_token`` / ``add_eos_token``, else False (nothing adds one)."""
    flags = {"bos": False, "eos": False}
    for typ in flags:
        if isinstance(tok_config.get(f"add_{typ}_token"), bool):
            flags[typ] = tok_config[f"add_{typ}_token"]
    post = tok.get("post_processor") or {}
    for proc in post.get("processors", [post]):
        single = proc.get("single", []) if proc.get("type") == "TemplateProcessing" else []
        if len(single) > 1:
            flags["bos"] = "SpecialToken" in single[0]
            flags["eos"] = "SpecialToken" in single[-1]
    return flags
