"""Layer-sequential AWQ over a whole checkpoint (refquant.checkpoint.layerwise_awq), and the
LLaMA-layout architectures the calibrated recipes accept."""

from __future__ import annotations

import concurrent.futures as cf
import json
from pathlib import Path

import numpy as np
import pytest

from refquant.algorithms import rtn
from refquant.algorithms.awq import clip_stride, group_grams, quantize_scaled, search_clip, search_scale
from refquant.checkpoint import Checkpoint, quantize, synthetic
from refquant.checkpoint.journal import Journal
from refquant.checkpoint.layerwise import capture_inputs, run_block
from refquant.layouts import awq as layout
from refquant.model import CausalLM, LlamaConfig

safetensors_numpy = pytest.importorskip("safetensors.numpy")

RECIPE = "awq-4bit-g128"


def _config(n_kv_heads: int = 4, **extra: object) -> dict:
    cfg = synthetic.llama_config(hidden=128, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, intermediate=256,
                                 vocab=256)
    return {**cfg, **extra}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 blocks, hidden 128, no grouped-query attention (so v_proj -> o_proj is scaled too), bf16."""
    return synthetic.write_llama(tmp_path_factory.mktemp("a") / "tiny", _config())


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (4, 32))


@pytest.fixture(scope="module")
def serial(src: Path, ids: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize(src, tmp_path_factory.mktemp("o") / "q", RECIPE, calibration=ids, calib_shards=2, progress=False)


def _load(folder: Path) -> dict[str, np.ndarray]:
    return safetensors_numpy.load_file(folder / "model.safetensors")


def _loaded_model(folder: Path) -> CausalLM:
    """The model a loader builds from the folder: AWQ GEMM tensors decoded, the other tensors as stored."""
    stored = _load(folder)
    w = {}
    for name, v in stored.items():
        if name.endswith(".qweight"):
            p = name[: -len(".qweight")]
            w[p + ".weight"] = layout.decode({k: stored[f"{p}.{k}"] for k in layout.TENSOR_NAMES}, 128)
        elif not name.endswith((".qzeros", ".scales")):
            w[name] = v.astype(np.float32)
    return CausalLM(LlamaConfig.from_folder(folder), w)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_first_block_matches_a_hand_run(src: Path, ids: np.ndarray, serial: Path) -> None:
    """Block 0 of the 2-shard run from the public AWQ steps: each shard's statistics, summed in shard order."""
    out = _load(serial)
    ck = Checkpoint(src)
    p = "model.layers.0."
    w = {n[len(p):]: ck.float32(n) for n in ck.tensors if n.startswith(p)}
    shards = np.array_split(ids, 2)
    stride = clip_stride(ids.size)
    seen: list[dict[str, np.ndarray]] = [{}, {}]
    for shard, captured in zip(shards, seen):
        run_block(ck.config, w, ck.float32("model.embed_tokens.weight")[shard], capture_inputs(captured))
    Xs = [{k: v.astype(np.float64) for k, v in c.items()} for c in seen]

    def scale(names: tuple[str, ...], first: str) -> np.ndarray:
        W = np.concatenate([w[n + ".weight"] for n in names])
        n = sum(x[first].shape[0] for x in Xs)
        abs_sum = np.abs(Xs[0][first]).sum(0) + np.abs(Xs[1][first]).sum(0)
        xtx = Xs[0][first].T @ Xs[0][first] + Xs[1][first].T @ Xs[1][first]
        return search_scale(W, abs_sum / n, xtx, n, 4, 128)[0]

    s_mlp = scale(("mlp.gate_proj", "mlp.up_proj"), "mlp.gate_proj")
    s_down = scale(("mlp.down_proj",), "mlp.down_proj")
    gamma = w["post_attention_layernorm.weight"].astype(np.float64)
    assert np.array_equal(out[p + "post_attention_layernorm.weight"], (gamma / s_mlp).astype(np.float16))
    offsets = (0, shards[0].size)
    a, b = (group_grams(x["mlp.down_proj"], 128, stride, o) for x, o in zip(Xs, offsets))
    s64 = s_down.astype(np.float64)
    grams = [(x + y) / np.outer(s64[c:c + 128], s64[c:c + 128]) for x, y, c in zip(a, b, range(0, 256, 128))]
    W = w["mlp.down_proj.weight"] * s64
    expected = layout.encode(quantize_scaled(W, search_clip(W, grams)))
    for k, v in expected.items():
        assert np.array_equal(out[f"{p}mlp.down_proj.{k}"], v), k
    # up_proj feeds down_proj: its rows carry 1 / s_down; gate_proj's do not
    up = layout.decode({k: out[f"{p}mlp.up_proj.{k}"] for k in layout.TENSOR_NAMES}, 128)
    gate = layout.decode({k: out[f"{p}mlp.gate_proj.{k}"] for k in layout.TENSOR_NAMES}, 128)
    target_up = w["mlp.up_proj.weight"] * s_mlp / s_down[:, None]
    assert _rel(up, target_up) < 0.15 and _rel(gate, w["mlp.gate_proj.weight"] * s_mlp) < 0.15
    assert not np.array_equal(s_mlp, np.ones_like(s_mlp)) and not np.array_equal(s_down, np.ones_like(s_down))


def test_folder_loads_and_logits_stay_close(src: Path, ids: np.ndarray, serial: Path) -> None:
    """Decoded through refquant's AWQ layout codec, the model's logits stay within 40 % (relative L2)
    of the float model's on a held-out text, and on the calibration text they are closer than
    4-bit g128 RTN's (a wrong or missing fold of a scale would be far off)."""
    ck = Checkpoint(src)
    fp = CausalLM(LlamaConfig.from_dict(ck.config), {n: ck.float32(n) for n in ck.tensors})
    rtn_model = fp.with_linears({n: type(lin)(rtn(lin.weight, 4, 128, sym=False, rule="awq").dequantized)
                                 for n, lin in fp.linears().items()})
    q = _loaded_model(serial)
    text = np.random.default_rng(1).integers(0, 256, (1, 16))
    assert _rel(q(text), fp(text)) < 0.4
    calib = ids[:2]
    assert _rel(q(calib), fp(calib)) < _rel(rtn_model(calib), fp(calib))
    stored = _load(serial)
    assert "model.layers.1.self_attn.o_proj.weight" not in stored
    assert stored["model.layers.1.self_attn.o_proj.qweight"].dtype == np.int32
    assert np.array_equal(stored["lm_head.weight"], np.asarray(ck.raw("lm_head.weight")))


def test_config_is_what_transformers_reads(serial: Path) -> None:
    config = json.loads((serial / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc == {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm",
                  "modules_to_not_convert": None}
    assert config["torch_dtype"] == "float16"
    transformers = pytest.importorskip("transformers")
    awq_config = transformers.AwqConfig.from_dict(qc)
    assert (awq_config.bits, awq_config.group_size, awq_config.zero_point) == (4, 128, True)
    # transformers 4 keeps ``version`` (an AWQLinearVersion), 5 maps it onto ``format``; to_dict() has it in both
    assert str(awq_config.to_dict()["version"]).lower().endswith("gemm")


def test_executors_dask_and_resume_are_byte_identical(src: Path, ids: np.ndarray, serial: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (serial / "model.safetensors").read_bytes()
    with cf.ThreadPoolExecutor(2) as ex:
        a = quantize(src, tmp_path / "a", RECIPE, calibration=ids, executor=ex, progress=False)
    assert (a / "model.safetensors").read_bytes() == expected
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        d = quantize(src, tmp_path / "d", RECIPE, calibration=ids, executor=client.get_executor(), progress=False)
    assert (d / "model.safetensors").read_bytes() == expected
    real = Journal.record
    count = []

    def record(self, unit, tensors):  # noqa: ANN001, ANN202
        if len(count) == 3 + 4:  # the three copied tensors, then 4 of block 0's 9 units
            raise KeyboardInterrupt
        count.append(unit)
        return real(self, unit, tensors)

    monkeypatch.setattr(Journal, "record", record)
    with pytest.raises(KeyboardInterrupt):
        quantize(src, tmp_path / "b", RECIPE, calibration=ids, progress=False)
    monkeypatch.setattr(Journal, "record", real)
    assert not (tmp_path / "b").exists() and list((tmp_path / "b.partial" / "calib").iterdir())
    b = quantize(src, tmp_path / "b", RECIPE, calibration=ids, progress=False)
    assert (b / "model.safetensors").read_bytes() == expected


def test_qwen2_biases_and_grouped_query_attention(tmp_path: Path) -> None:
    """Qwen2 (q/k/v biases, GQA: o_proj is not scaled) quantizes; its biases travel with their linears."""
    cfg = _config(n_kv_heads=2, architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False)
    src = synthetic.write_llama(tmp_path / "qwen", cfg)
    rng = np.random.default_rng(3)
    biases = {f"model.layers.{i}.self_attn.{m}.bias": (0.1 * rng.standard_normal(128 if m == "q_proj" else 64))
              .astype(np.float32) for i in range(2) for m in ("q_proj", "k_proj", "v_proj")}
    safetensors_numpy.save_file(biases, src / "model-bias.safetensors")
    shards = {"model.safetensors", "model-bias.safetensors"}
    weight_map = {n: "model.safetensors" for n in safetensors_numpy.load_file(src / "model.safetensors")}
    weight_map.update({n: "model-bias.safetensors" for n in biases})
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert {f.name for f in src.glob("*.safetensors")} == shards
    ids = rng.integers(0, 256, (2, 16))
    out = quantize(src, tmp_path / "q", RECIPE, calibration=ids, progress=False)
    stored = _load(out)
    v_bias = "model.layers.0.self_attn.v_proj.bias"
    assert stored[v_bias].dtype == np.float16  # o_proj is not scaled under GQA: v's bias is only cast
    assert np.array_equal(stored[v_bias], biases[v_bias].astype(np.float16))
    ck = Checkpoint(src)
    fp = CausalLM(LlamaConfig.from_dict(ck.config), {n: ck.float32(n) for n in ck.tensors})
    assert _rel(_loaded_model(out)(ids[:1]), fp(ids[:1])) < 0.4
    gptq_out = _load(quantize(src, tmp_path / "g", "gptq-4bit-g128", calibration=ids, progress=False))
    assert np.array_equal(gptq_out[v_bias], biases[v_bias]) and gptq_out[v_bias.replace("bias", "g_idx")].size == 128
    with pytest.raises(ValueError, match=r"Qwen2ForCausalLM.*GGUF output supports LlamaForCausalLM"):
        quantize(src, tmp_path / "q.gguf", "q8_0", progress=False)


def test_architectures_outside_the_llama_layout_are_named(tmp_path: Path) -> None:
    src = synthetic.write_llama(tmp_path / "phi", _config(architectures=["PhiForCausalLM"], model_type="phi"))
    with pytest.raises(ValueError, match=r"PhiForCausalLM.*allowed: LlamaForCausalLM \(llama\), MistralForCausalLM"):
        quantize(src, tmp_path / "q", RECIPE, calibration=np.zeros((1, 4), int), progress=False)
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match=r"PhiForCausalLM.*not supported by 'nf4'"):
        quantize(src, tmp_path / "q", "nf4", progress=False)
    window = _config(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=3)
    cfg = LlamaConfig.from_dict(window)
    assert cfg.sliding_window == 3
    src = synthetic.write_llama(tmp_path / "mistral", window)
    model = CausalLM.from_pretrained(src)
    ids = np.arange(6)[None] * 7
    full = CausalLM(LlamaConfig.from_dict({**window, "sliding_window": None}), {n: Checkpoint(src).float32(n)
                                                                               for n in Checkpoint(src).tensors})
    # the first 3 positions see the same keys with or without the window; later ones do not
    assert np.allclose(model(ids)[0, :3], full(ids)[0, :3], atol=1e-6)
    assert not np.allclose(model(ids)[0, 3:], full(ids)[0, 3:], atol=1e-3)


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ["MistralForCausalLM", "Qwen2ForCausalLM"])
def test_forward_matches_transformers(arch: str) -> None:
    """CausalLM (the calibration's forward pass) against transformers' Mistral (sliding window 3) and
    Qwen2 (q/k/v biases, tied embeddings), randomly initialized."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    base = {k: v for k, v in synthetic.llama_config(hidden=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab=96,
                                                    dtype="float32").items() if k not in ("architectures", "torch_dtype")}
    if arch == "MistralForCausalLM":
        cfg = {**base, "sliding_window": 3}
        hf_config = transformers.MistralConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
    else:
        cfg = {**base, "tie_word_embeddings": True, "use_sliding_window": False}
        hf_config = transformers.Qwen2Config(**{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    hf = getattr(transformers, arch)(hf_config).eval()
    sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    if arch == "Qwen2ForCausalLM":
        assert "model.layers.0.self_attn.q_proj.bias" in sd
        for k in [k for k in sd if k.endswith("_proj.bias")]:  # random init leaves them 0
            sd[k] = np.random.default_rng(1).standard_normal(sd[k].shape).astype(np.float32)
            hf.state_dict()[k].copy_(torch.from_numpy(sd[k]))
    ids = np.random.default_rng(2).integers(0, 96, (2, 7))
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    config = {**cfg, "architectures": [arch], "model_type": hf_config.model_type}
    got = CausalLM(LlamaConfig.from_dict(config), sd)(ids)
    assert np.allclose(got, ref, atol=1e-4 * np.abs(ref).max()), np.abs(got - ref).max()
