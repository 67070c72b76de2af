"""llama.cpp's per-tensor mixture rules (refquant.formats.gguf_recipes.tensor_type).

Expected values are worked out by hand from ``llama_tensor_get_type`` in llama.cpp's
``src/llama-quant.cpp`` (commit 8784689f) for a 32-layer LLaMA-7B (4096 hidden, 11008 ffn,
no GQA) and for GQA models.
"""

from __future__ import annotations

import pytest

from refquant.formats.gguf_recipes import GGUF_RECIPES, MIXTURES, file_type, is_quantized, tensor_type

SQ, FFN_UP, FFN_DOWN, VOCAB = (4096, 4096), (11008, 4096), (4096, 11008), (32000, 4096)


def _types(recipe: str, kind: str, shape: tuple[int, int], n_layers: int = 32, **kw) -> list[str]:
    return [tensor_type(f"blk.{i}.{kind}.weight", shape, recipe, n_layers, **kw) for i in range(n_layers)]


def test_q4_k_m_7b() -> None:
    # use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2
    more = {i for i in range(32) if i < 4 or i >= 28 or (i - 4) % 3 == 2}
    assert more == {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}
    assert _types("q4_k_m", "attn_v", SQ) == ["q6_k" if i in more else "q4_k" for i in range(32)]
    assert _types("q4_k_m", "ffn_down", FFN_DOWN) == ["q6_k" if i in more else "q4_k" for i in range(32)]
    for kind in ("attn_q", "attn_k", "attn_output", "ffn_gate"):
        assert set(_types("q4_k_m", kind, SQ)) == {"q4_k"}
    assert tensor_type("output.weight", VOCAB, "q4_k_m", 32) == "q6_k"
    assert tensor_type("token_embd.weight", VOCAB, "q4_k_m", 32) == "q4_k"
    assert tensor_type("blk.0.attn_norm.weight", (4096,), "q4_k_m", 32) == "f32"
    assert tensor_type("output_norm.weight", (4096,), "q4_k_m", 32) == "f32"


def test_small_mixtures() -> None:
    assert _types("q3_k_m", "attn_v", SQ)[:3] == ["q5_k", "q5_k", "q4_k"]
    assert set(_types("q3_k_m", "attn_output", SQ)) == {"q4_k"}
    assert _types("q3_k_m", "ffn_down", FFN_DOWN)[:3] == ["q5_k", "q5_k", "q4_k"]  # i < 32/16
    assert set(_types("q3_k_l", "ffn_down", FFN_DOWN)) == {"q5_k"}
    assert set(_types("q3_k_s", "ffn_down", FFN_DOWN)) == {"q3_k"}
    assert set(_types("q2_k", "attn_v", SQ)) == {"q3_k"}
    assert set(_types("q2_k", "attn_v", SQ, n_gqa=8)) == {"q4_k"}
    assert set(_types("q2_k", "ffn_down", FFN_DOWN)) == {"q3_k"}
    assert set(_types("q2_k", "ffn_up", FFN_UP)) == {"q2_k"}
    assert _types("q4_k_s", "attn_v", SQ)[3:5] == ["q5_k", "q4_k"]
    assert _types("q4_k_s", "ffn_down", FFN_DOWN)[3:5] == ["q5_k", "q4_k"]  # i < 32/8
    assert _types("q5_k_m", "ffn_down", FFN_DOWN)[4:7] == ["q5_k", "q5_k", "q6_k"]
    assert set(_types("q5_k_s", "ffn_down", FFN_DOWN)) == {"q5_k"}
    assert set(_types("q6_k", "attn_v", SQ)) == {"q6_k"}
    assert tensor_type("output.weight", VOCAB, "q6_k", 32) == "q6_k"
    assert tensor_type("output.weight", VOCAB, "q8_0", 32) == "q8_0"
    assert tensor_type("output.weight", VOCAB, "q4_0", 32) == "q6_k"  # even the legacy mixtures
    assert tensor_type("token_embd.weight", VOCAB, "tq1_0", 32) == "q4_k"
    assert _types("q4_0", "ffn_down", FFN_DOWN, has_imatrix=True)[3:5] == ["q4_1", "q4_0"]
    assert _types("iq4_xs", "ffn_down", FFN_DOWN)[3:5] == ["q5_k", "iq4_xs"]
    assert set(_types("iq4_nl", "attn_v", SQ, n_gqa=8)) == {"q5_k"}
    assert _types("q3_k_m", "attn_v", SQ, is_70b=True)[2] == "q5_k"
    assert set(_types("q4_k_m", "attn_k", SQ, n_expert=8)) == {"q8_0"}


def test_tied_embeddings_take_the_output_type() -> None:
    assert tensor_type("token_embd.weight", VOCAB, "q4_k_m", 32, has_output=False) == "q6_k"


def test_fallbacks_and_pure_types() -> None:
    # row length 4000 is a multiple of 32 but not of 256
    assert tensor_type("blk.5.attn_q.weight", (4096, 4000), "q4_k_m", 32) == "q5_0"
    assert tensor_type("blk.0.attn_v.weight", (4096, 4000), "q4_k_m", 32) == "q8_0"  # q6_k -> q8_0
    assert tensor_type("blk.5.attn_q.weight", (4096, 4000), "q2_k", 32) == "iq4_nl"
    assert tensor_type("blk.5.attn_q.weight", (4096, 4010), "q4_k_m", 32) == "f16"  # q5_0 cannot take it either
    assert tensor_type("output.weight", (32000, 4000), "q4_k_m", 32) == "q8_0"
    assert tensor_type("blk.5.attn_q.weight", SQ, "q4_k", 32) == "q4_k"
    assert tensor_type("output.weight", VOCAB, "q4_k", 32) == "q4_k"  # --pure: no mixture rule
    with pytest.raises(ValueError, match=r"blk\.5\.attn_q\.weight.*4000.*256"):
        tensor_type("blk.5.attn_q.weight", (4096, 4000), "q4_k", 32)


def test_float_recipes_and_what_is_quantized() -> None:
    assert tensor_type("blk.0.attn_q.weight", SQ, "f16", 32) == "f16"
    assert tensor_type("blk.0.attn_norm.weight", (4096,), "bf16", 32) == "f32"
    assert tensor_type("token_embd.weight", VOCAB, "bf16", 32) == "bf16"
    assert not is_quantized("blk.0.ffn_gate_inp.weight", (8, 4096))
    assert not is_quantized("blk.0.attn_q.bias", (4096,))
    assert is_quantized("blk.0.ffn_gate_exps.weight", (8, 14336, 4096))


def test_file_types_and_errors() -> None:
    assert file_type("q4_k_m") == 15 and file_type("f16") == 1 and file_type("bf16") == 32
    assert file_type("q4_k") == 14  # the first mixture whose default type it is (Q4_K_S)
    assert file_type("mxfp4") == 1024
    assert set(MIXTURES) <= set(GGUF_RECIPES)
    with pytest.raises(ValueError, match="recipe='q4_k_x'.*allowed"):
        tensor_type("output.weight", VOCAB, "q4_k_x", 32)


def test_iq_mixtures() -> None:
    """The IQ1/IQ2/IQ3 mixtures (llama_tensor_get_type's low-bit branch and its IQ3 cases)."""
    from refquant.formats.gguf_recipes import requires_imatrix

    first_eighth = lambda a, b: [a] * 4 + [b] * 28  # noqa: E731  (i_layer < 32 / 8)
    assert set(_types("iq2_xxs", "attn_v", SQ)) == {"q2_k"}
    assert set(_types("iq2_xxs", "attn_v", SQ, n_gqa=4)) == {"q4_k"}
    assert _types("iq2_xxs", "ffn_down", FFN_DOWN) == first_eighth("q2_k", "iq2_xxs")
    assert set(_types("iq2_xxs", "attn_output", SQ)) == {"iq2_xxs"}
    assert set(_types("iq2_xxs", "attn_output", SQ, n_expert=8)) == {"q5_k"}
    assert set(_types("iq2_xxs", "attn_q", SQ)) == {"iq2_xxs"}
    assert tensor_type("output.weight", VOCAB, "iq2_xxs", 32) == "q5_k"
    assert tensor_type("token_embd.weight", VOCAB, "iq2_xxs", 32) == "q2_k"
    for recipe, base in (("iq2_s", "iq2_xs"), ("iq2_m", "iq2_s")):     # llama.cpp's naming: IQ2_S is mostly IQ2_XS
        assert set(_types(recipe, "attn_q", SQ)) == {base}
        assert set(_types(recipe, "attn_v", SQ)) == {"iq3_s"}
        assert set(_types(recipe, "attn_output", SQ)) == {"iq3_s"}
        assert _types(recipe, "ffn_down", FFN_DOWN) == first_eighth("iq3_s", base)
        assert tensor_type("token_embd.weight", VOCAB, recipe, 32) == "iq3_s"
    assert set(_types("iq1_s", "attn_output", SQ)) == {"iq2_xxs"}
    assert set(_types("iq1_m", "ffn_up", FFN_UP)) == {"iq1_m"}
    assert tensor_type("token_embd.weight", VOCAB, "iq1_m", 32) == "q2_k"
    # IQ3_XXS: attn_v depends on the imatrix; without one ffn_down is q4_k / q3_k
    assert set(_types("iq3_xxs", "attn_v", SQ)) == {"iq3_s"}
    assert set(_types("iq3_xxs", "attn_v", SQ, has_imatrix=True)) == {"iq3_xxs"}
    assert set(_types("iq3_xxs", "attn_v", SQ, n_gqa=8)) == {"q4_k"}
    assert set(_types("iq3_xxs", "attn_k", SQ)) == set(_types("iq3_xxs", "attn_q", SQ)) == {"iq2_s"}
    assert _types("iq3_xxs", "ffn_down", FFN_DOWN) == first_eighth("q4_k", "q3_k")
    assert set(_types("iq3_xxs", "ffn_down", FFN_DOWN, has_imatrix=True)) == {"iq3_xxs"}
    assert set(_types("iq3_xxs", "attn_output", SQ)) == {"iq3_s"}
    assert tensor_type("output.weight", VOCAB, "iq3_xxs", 32) == "q5_k"
    # IQ3_XS / IQ3_S / IQ3_M (default IQ3_S)
    assert _types("iq3_xs", "ffn_gate", FFN_UP) == ["iq3_s"] * 4 + ["iq3_xxs"] * 24 + ["iq3_s"] * 4
    assert set(_types("iq3_xs", "attn_k", SQ)) == {"iq3_xxs"}
    assert set(_types("iq3_xs", "attn_v", SQ)) == {"iq3_s"}
    assert set(_types("iq3_s", "attn_v", SQ, n_gqa=4)) == {"q4_k"}
    assert tensor_type("output.weight", VOCAB, "iq3_s", 32) == "q6_k"
    assert set(_types("iq3_m", "attn_v", SQ)) == set(_types("iq3_m", "attn_output", SQ)) == {"q4_k"}
    assert _types("iq3_m", "ffn_down", FFN_DOWN) == first_eighth("q4_k", "iq3_s")
    assert set(_types("iq3_m", "attn_qkv", (12288, 4096))) == {"q4_k"}
    # the grid types fall back to IQ4_NL; file types; the imatrix rule
    assert tensor_type("blk.5.attn_q.weight", (4096, 4000), "iq2_xxs", 32) == "iq4_nl"
    assert [file_type(r) for r in ("iq2_xxs", "iq2_xs", "iq3_xs", "iq3_xxs", "iq1_s", "iq3_s", "iq3_m", "iq2_s",
                                   "iq2_m", "iq1_m")] == [19, 20, 22, 23, 24, 26, 27, 28, 29, 31]
    assert all(requires_imatrix("blk.0.attn_q.weight", t) for t in ("iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m"))
    assert not requires_imatrix("token_embd.weight", "iq1_m") and not requires_imatrix("blk.0.attn_q.weight", "iq3_xxs")
