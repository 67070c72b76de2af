"""Layer-sequential GPTQ over a whole checkpoint (refquant.checkpoint.layerwise)."""

from __future__ import annotations

import concurrent.futures as cf
import json
from pathlib import Path

import numpy as np
import pytest

from refquant.algorithms import gptq
from refquant.calibration.hessian import HessianAccumulator
from refquant.checkpoint import Checkpoint, quantize, synthetic
from refquant.checkpoint.journal import Journal
from refquant.layouts import gptq as layout
from refquant.checkpoint.layerwise import capture_inputs, run_block
from refquant.model.llama import BLOCK_INPUTS

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = synthetic.llama_config(hidden=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab=256, dtype="float32")
    return synthetic.write_llama(tmp_path_factory.mktemp("g") / "tiny", cfg)


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (4, 24))


@pytest.fixture(scope="module")
def serial(src: Path, ids: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize(src, tmp_path_factory.mktemp("o") / "q", "gptq-4bit-g128", calibration=ids, calib_shards=2,
                    progress=False)


def _load(folder: Path) -> dict[str, np.ndarray]:
    return safetensors_numpy.load_file(folder / "model.safetensors")


def test_layer_sequential_gptq_matches_a_hand_run(src: Path, ids: np.ndarray, serial: Path) -> None:
    """The 2-shard run: per block, the shards' Hessians summed in shard order, GPTQ per linear, and the
    next block's inputs from this block with its weights as a loader decodes them."""
    out = _load(serial)
    ck = Checkpoint(src)
    hs = [ck.float32("model.embed_tokens.weight")[shard] for shard in np.array_split(ids, 2)]
    for layer in range(2):
        p = f"model.layers.{layer}."
        w = {n[len(p):]: ck.float32(n) for n in ck.tensors if n.startswith(p)}
        seen: list[dict[str, np.ndarray]] = [{}, {}]
        for h, captured in zip(hs, seen):
            run_block(ck.config, w, h, capture_inputs(captured))
        for modules in BLOCK_INPUTS:
            H = HessianAccumulator().add(seen[0][modules[0]]).merge(HessianAccumulator().add(seen[1][modules[0]])).H
            for m in modules:
                expected = layout.encode(gptq(w[m + ".weight"], H, bits=4, group_size=128, damp=0.01))
                for k, v in expected.items():
                    assert np.array_equal(out[p + m + "." + k], v), (layer, m, k)
                w[m + ".weight"] = layout.decode({k: out[p + m + "." + k] for k in layout.TENSOR_NAMES}, 4, 128)
        hs = [run_block(ck.config, w, h) for h in hs]
    assert np.array_equal(out["model.norm.weight"], ck.raw("model.norm.weight"))
    assert "model.layers.0.self_attn.q_proj.weight" not in out


def test_config_is_what_transformers_reads(serial: Path) -> None:
    qc = json.loads((serial / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["bits"] == 4 and qc["group_size"] == 128 and qc["desc_act"] is False
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPTQConfig.from_dict(qc)
    assert (cfg.bits, cfg.group_size, cfg.desc_act, cfg.sym) == (4, 128, False, True)


def test_reconstruction_is_close(src: Path, serial: Path) -> None:
    out = _load(serial)
    ck = Checkpoint(src)
    name = "model.layers.1.mlp.down_proj"
    W = ck.float32(name + ".weight")
    Wq = layout.decode({k: out[f"{name}.{k}"] for k in layout.TENSOR_NAMES}, 4, 128)
    # 0.162 measured: GPTQ minimizes the output error on 96 calibration tokens for 512 inputs, not the weight error
    assert Wq.shape == W.shape and np.linalg.norm(Wq - W) / np.linalg.norm(W) < 0.2


def test_executor_and_resume_are_byte_identical(src: Path, ids: np.ndarray, serial: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with cf.ThreadPoolExecutor(2) as ex:
        a = quantize(src, tmp_path / "a", "gptq-4bit-g128", calibration=ids, executor=ex, progress=False)
    assert (a / "model.safetensors").read_bytes() == (serial / "model.safetensors").read_bytes()
    real = Journal.record
    count = []

    def record(self, unit, tensors):  # noqa: ANN001, ANN202
        if len(count) == 12:  # a few modules of block 1 done, the rest not
            raise KeyboardInterrupt
        count.append(unit)
        return real(self, unit, tensors)

    monkeypatch.setattr(Journal, "record", record)
    with pytest.raises(KeyboardInterrupt):
        quantize(src, tmp_path / "b", "gptq-4bit-g128", calibration=ids, progress=False)
    monkeypatch.setattr(Journal, "record", real)
    assert list((tmp_path / "b.partial" / "calib").iterdir())  # block 1's inputs kept for the resume
    b = quantize(src, tmp_path / "b", "gptq-4bit-g128", calibration=ids, progress=False)
    assert (b / "model.safetensors").read_bytes() == (serial / "model.safetensors").read_bytes()


def test_calibration_is_checked(src: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration is required"):
        quantize(src, tmp_path / "x", "gptq-4bit-g128", progress=False)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 256\)"):
        quantize(src, tmp_path / "x", "gptq-4bit-g128", calibration=np.full((2, 4), 300), progress=False)
    with pytest.raises(ValueError, match="calib_shards"):
        quantize(src, tmp_path / "x", "gptq-4bit-g128", calibration=np.zeros((2, 4), int), calib_shards=3,
                 progress=False)


@pytest.mark.oracle
def test_block_matches_transformers_llama() -> None:
    """The calibration's block (CausalLM's decoder_block) against transformers' LlamaForCausalLM (GQA, causal, rope)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from refquant.model.llama import rms_norm

    cfg = synthetic.llama_config(hidden=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab=128, dtype="float32")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")})).eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        ref = hf(ids, output_hidden_states=True)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    h = sd["model.embed_tokens.weight"][ids.numpy()]
    for layer in range(2):
        p = f"model.layers.{layer}."
        h = run_block(cfg, {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}, h)
        if layer == 0:
            assert np.allclose(h, ref.hidden_states[1].numpy(), atol=1e-5)
    final = rms_norm(h, sd["model.norm.weight"], cfg["rms_norm_eps"])  # the last hidden state is normed
    assert np.allclose(final, ref.hidden_states[2].numpy(), atol=1e-5)
