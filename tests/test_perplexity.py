"""refquant.metrics.perplexity: known values, the Hugging Face guide's loop run with torch as the
oracle of the sliding window, and llama.cpp's chunk rule."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.metrics import PerplexityResult, perplexity
from refquant.perplexity import token_nll

VOCAB = 11


def uniform(ids: np.ndarray) -> np.ndarray:
    return np.zeros((*ids.shape, VOCAB), np.float32)


class PositionalBigram:
    """Logits that depend on the previous token and on the position inside the window, so a wrong
    choice of scored tokens or windows changes the result."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.table = rng.normal(size=(VOCAB, VOCAB)).astype(np.float32)
        self.calls: list[np.ndarray] = []

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.calls.append(ids.copy())
        pos = np.arange(ids.shape[1], dtype=np.float32)
        return self.table[ids] + 0.05 * pos[None, :, None] * self.table[:, 0]


def hf_guide(model, ids: np.ndarray, context: int, stride: int) -> float:
    """The loop of the Hugging Face guide "Perplexity of fixed-length models", in torch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    seq_len = len(ids)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + context, seq_len)
        trg_len = end - prev_end
        input_ids = torch.from_numpy(ids[begin:end][None].astype(np.int64))
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        logits = torch.from_numpy(np.asarray(model(input_ids.numpy()), np.float64))
        shift_logits, shift_labels = logits[:, :-1], target_ids[:, 1:]
        loss = F.cross_entropy(shift_logits.reshape(-1, VOCAB), shift_labels.reshape(-1), ignore_index=-100,
                               reduction="sum")
        nll_sum += float(loss)
        n_tokens += int((shift_labels != -100).sum())
        prev_end = end
        if end == seq_len:
            break
    return float(np.exp(nll_sum / n_tokens))


def test_uniform_model_has_perplexity_vocab_size(rng):
    ids = rng.integers(0, VOCAB, size=50)
    for kwargs in ({"context": 8}, {"context": 8, "stride": 3}, {"context": 8, "method": "llama.cpp"}):
        r = perplexity(uniform, ids, **kwargs)
        assert isinstance(r, PerplexityResult)
        assert r.perplexity == pytest.approx(VOCAB, rel=1e-12)
        assert r.nll == pytest.approx(np.log(VOCAB), rel=1e-12)


def test_perfect_model_has_perplexity_one():
    ids = np.arange(40) % VOCAB  # the next token is always (t + 1) mod VOCAB

    def oracle(x):
        return np.where(np.arange(VOCAB) == ((x + 1) % VOCAB)[..., None], 1e4, 0.0).astype(np.float32)

    assert perplexity(oracle, ids, context=8).perplexity == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("context,stride,n", [(8, 4, 37), (8, 8, 37), (8, 3, 8), (8, 5, 41), (16, 1, 20)])
def test_sliding_window_equals_the_hugging_face_guide(rng, context, stride, n):
    model = PositionalBigram(rng)
    ids = rng.integers(0, VOCAB, size=n)
    r = perplexity(model, ids, context=context, stride=stride)
    assert r.perplexity == pytest.approx(hf_guide(model, ids, context, stride), rel=1e-12)
    # every token but the first, once; disjoint windows cannot score their first token
    assert r.tokens == (n - 1 if stride < context else n - r.windows)


def test_sliding_window_with_one_window_is_plain_cross_entropy(rng):
    torch = pytest.importorskip("torch")
    model = PositionalBigram(rng)
    ids = rng.integers(0, VOCAB, size=12)
    logits = torch.from_numpy(model(ids[None])[0].astype(np.float64))
    direct = float(torch.exp(torch.nn.functional.cross_entropy(logits[:-1], torch.from_numpy(ids[1:]))))
    r = perplexity(model, ids, context=12)
    assert r.windows == 1 and r.perplexity == pytest.approx(direct, rel=1e-12)


def test_llama_cpp_scores_the_second_half_of_each_chunk(rng):
    model = PositionalBigram(rng)
    ids = rng.integers(0, VOCAB, size=8 * 3 + 5)  # 3 chunks, a tail of 5 dropped
    r = perplexity(model, ids, context=8, method="llama.cpp", bos_token_id=0)
    assert r.windows == 3 and r.tokens == 3 * (8 - 1 - 4)
    nll = []
    for k in range(3):
        chunk = ids[8 * k:8 * (k + 1)].copy()
        chunk[0] = 0  # BOS replaces the chunk's first token
        logits = model(chunk[None])[0]
        nll += list(token_nll(logits[4:7], chunk[5:8]))
    assert r.perplexity == pytest.approx(np.exp(np.mean(nll)), rel=1e-12)
    assert all(call[0, 0] == 0 for call in model.calls)


def test_max_windows_progress_and_determinism(rng):
    model = PositionalBigram(rng)
    ids = rng.integers(0, VOCAB, size=60)
    seen = []
    a = perplexity(model, ids, context=8, stride=4, max_windows=3, progress=lambda d, t: seen.append((d, t)))
    assert a.windows == 3 and a.tokens == 7 + 4 + 4 and seen == [(1, 3), (2, 3), (3, 3)]
    assert perplexity(model, ids, context=8, stride=4, max_windows=3) == a


def test_token_nll_is_log_softmax():
    logits = np.array([[0.0, np.log(3.0)], [1000.0, 0.0]])
    np.testing.assert_allclose(token_nll(logits, np.array([1, 1])), [np.log(4 / 3), 1000.0])


def test_bad_arguments(rng):
    ids = rng.integers(0, VOCAB, size=20)
    cases = [({"context": 1}, "context"), ({"context": 8, "stride": 9}, "stride"),
             ({"context": 8, "method": "wiki"}, "method"), ({"context": 8, "bos_token_id": 1}, "bos_token_id"),
             ({"context": 16, "method": "llama.cpp"}, "2·context"),
             ({"context": 8, "method": "llama.cpp", "stride": 4}, "stride"), ({"context": 8, "max_windows": 0},
                                                                              "max_windows")]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            perplexity(uniform, ids, **kwargs)
    with pytest.raises(ValueError, match="1-D integer"):
        perplexity(uniform, ids.astype(float), context=8)
    with pytest.raises(ValueError, match="at least 2"):
        perplexity(uniform, ids[:1], context=8)
    with pytest.raises(TypeError, match="callable"):
        perplexity(object(), ids, context=8)


def test_progress_bar_on_stderr(rng, capsys):
    perplexity(uniform, rng.integers(0, VOCAB, size=30), context=8, progress=True)
    err = capsys.readouterr().err
    assert "perplexity windows" in err and err.endswith("\n")
