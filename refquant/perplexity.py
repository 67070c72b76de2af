"""Perplexity of a causal language model over a long token stream, as the field computes it.

A text longer than the model's context is cut into windows; each scored token ``x_t`` adds
``−log p(x_t | window tokens before it)`` (natural log, log-softmax in float64) to a sum, and
perplexity is ``exp(sum / count)``. Two windowings are implemented, chosen by ``method``:

``"sliding"`` (default) — the strided sliding window of the Hugging Face guide "Perplexity of
    fixed-length models" (https://huggingface.co/docs/transformers/perplexity): windows start
    at ``0, stride, 2·stride, …`` and span ``context`` tokens (the last one is cut at the end of
    the text, and the loop stops at the first window that reaches it). Each window scores only
    the tokens no earlier window scored: the first window scores its positions ``1..`` (the
    first token of the text has no prediction), every later one its last ``end − previous_end``
    tokens, each of which then sees at least ``context − stride`` tokens of history. With
    ``stride < context`` every token but the first is scored exactly once (``count = n − 1``);
    ``stride = context`` gives disjoint windows (fastest, least context) whose first tokens have
    no prediction, as in the guide (``count = n − windows``).

``"llama.cpp"`` — llama.cpp's ``llama-perplexity`` (``perplexity()`` in
    ``tools/perplexity/perplexity.cpp``): ``n // context`` disjoint chunks of exactly
    ``context`` tokens (a shorter tail is dropped; at least two chunks are required); when
    ``bos_token_id`` is given, it replaces the first token of each chunk (what the tool does for
    vocabularies with ``add_bos``); only the second half of each chunk is scored — the logits at
    positions ``first .. context−2`` with ``first = context // 2`` predict tokens
    ``first+1 .. context−1``, ``context − 1 − first`` tokens per chunk.

Both are deterministic: no sampling, windows in order, sums in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant._validate import check_choice, check_int

__all__ = ["PerplexityResult", "perplexity", "token_nll"]


@dataclass(frozen=True)
class PerplexityResult:
    """What :func:`perplexity` measured.

    Attributes
    ----------
    perplexity : float
        ``exp(nll)``.
    nll : float
        Mean negative log-likelihood per scored token, in nats.
    tokens : int
        Tokens scored.
    windows : int
        Forward passes made.
    """

    perplexity: float
    nll: float
    tokens: int
    windows: int


def token_nll(logits: Any, targets: Any) -> np.ndarray:
    """``−log softmax(logits)[target]`` per position, in float64.

    Parameters
    ----------
    logits : ndarray of float, shape (n, vocab)
    targets : ndarray of int, shape (n,)

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    if z.ndim != 2 or t.shape != (z.shape[0],):
        raise ValueError(f"logits must be (n, vocab) and targets (n,), got {z.shape} and {t.shape}")
    m = z.max(axis=1)
    log_sum = m + np.log(np.sum(np.exp(z - m[:, None]), axis=1))
    return log_sum - z[np.arange(len(t)), t]


def _windows(n: int, context: int, stride: int, method: str) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position inside the window) of each forward pass."""
    if method == "llama.cpp":
        first = context // 2
        return [(k * context, (k + 1) * context, first + 1) for k in range(n // context)]
    out, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        out.append((begin, end, max(1, (end - begin) - (end - prev_end))))
        prev_end = end
        if end == n:
            break
    return out


def perplexity(model: Callable[[np.ndarray], Any] | Any, token_ids: Any, *, context: int, stride: int | None = None,
               method: str = "sliding", bos_token_id: int | None = None, max_windows: int | None = None,
               progress: bool | Callable[[int, int], None] = False) -> PerplexityResult:
    """Perplexity of ``model`` on ``token_ids`` (see the module docstring for the windowing rules).

    Parameters
    ----------
    model : callable or object with ``forward``
        ``model(ids)`` with ids int64 (1, length) returns logits (1, length, vocab) (or
        (length, vocab)); ``logits[t]`` scores token ``t + 1``. A
        :class:`refquant.model.CausalLM` works as it is.
    token_ids : ndarray of int, shape (n,)
        The whole text, tokenized (no special tokens needed).
    context : int
        Window length in tokens (≥ 2).
    stride : int, optional
        ``"sliding"`` only: distance between window starts, 1..context (default ``context // 2``).
    method : {"sliding", "llama.cpp"}
    bos_token_id : int, optional
        ``"llama.cpp"`` only: replaces the first token of each chunk.
    max_windows : int, optional
        Stop after this many windows (the first ones): a cheaper estimate over a prefix.
    progress : bool or callable
        True: a text progress bar on stderr; a callable receives ``(windows_done, windows_total)``.

    Returns
    -------
    PerplexityResult
    """
    forward = model.forward if hasattr(model, "forward") else model
    if not callable(forward):
        raise TypeError(f"model must be callable or have a forward method, got {type(model).__name__}")
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"token_ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
    method = check_choice("method", method, ("sliding", "llama.cpp"))
    context = check_int("context", context, min=2)
    if method == "sliding":
        stride = context // 2 if stride is None else check_int("stride", stride, min=1, max=context)
        if bos_token_id is not None:
            raise ValueError("bos_token_id applies to method='llama.cpp' only; the sliding window scores the text "
                             "as given")
        if len(ids) < 2:
            raise ValueError(f"token_ids has {len(ids)} tokens; perplexity needs at least 2")
    else:
        if stride is not None:
            raise ValueError("stride applies to method='sliding' only; llama.cpp's chunks do not overlap")
        if len(ids) < 2 * context:
            raise ValueError(f"token_ids has {len(ids)} tokens; method='llama.cpp' needs at least 2·context = "
                             f"{2 * context} (llama-perplexity's own requirement)")
        if bos_token_id is not None:
            bos_token_id = check_int("bos_token_id", bos_token_id, min=0)
    windows = _windows(len(ids), context, stride or context, method)
    if max_windows is not None:
        windows = windows[:check_int("max_windows", max_windows, min=1)]
    report = _progress_callback(progress, len(windows))
    total, count = 0.0, 0
    for done, (begin, end, first) in enumerate(windows, start=1):
        window = np.array(ids[begin:end], dtype=np.int64)
        if bos_token_id is not None:
            window[0] = bos_token_id
        logits = np.asarray(forward(window[None, :]))
        logits = logits.reshape(end - begin, -1)
        nll = token_nll(logits[first - 1:-1], window[first:])
        total += float(np.sum(nll))
        count += nll.size
        report(done)
    mean = total / count
    return PerplexityResult(perplexity=float(np.exp(mean)), nll=mean, tokens=count, windows=len(windows))


def _progress_callback(progress: bool | Callable[[int, int], None], total: int) -> Callable[[int], None]:
    if callable(progress):
        return lambda done: progress(done, total)
    if not progress:
        return lambda done: None
    from refquant._progress import ProgressBar

    bar = ProgressBar(total, True)
    finished = [0]

    def step(done: int) -> None:
        while finished[0] < done:
            bar.step("perplexity windows")
            bar.advance()
            finished[0] += 1
        if done == total:
            bar.close()
    return step
