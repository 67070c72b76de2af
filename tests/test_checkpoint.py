"""Whole-checkpoint quantization (refquant.checkpoint): formats checked by their own readers,
executors byte-identical to the serial run, resumption after a kill, bad input."""

from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refquant import gguf as rgguf
from refquant.checkpoint import Checkpoint, quantize, synthetic
from refquant.checkpoint.journal import Journal
from refquant.checkpoint.safetensors_io import SafetensorsError

gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LLaMA (hidden 256, GQA 4:2, bf16) in two shards with an index."""
    cfg = synthetic.llama_config(hidden=256, n_layers=2, n_heads=4, n_kv_heads=2, vocab=512)
    return synthetic.write_llama(tmp_path_factory.mktemp("src") / "tiny-llama", cfg, n_shards=2)


@pytest.fixture(scope="module")
def q4km(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize(model, tmp_path_factory.mktemp("q") / "tiny.gguf", "q4_k_m", progress=False)


def test_source_reads_sharded_safetensors(model: Path) -> None:
    ck = Checkpoint(model)
    assert len(ck.files) == 2 and (model / "model.safetensors.index.json").is_file()
    assert len(ck.tensors) == 2 * 9 + 3
    w = ck.raw("model.layers.1.mlp.down_proj.weight")
    assert w.dtype.name == "bfloat16" and w.shape == (256, 1024)
    assert ck.float32("model.layers.1.mlp.down_proj.weight").dtype == np.float32
    torch = pytest.importorskip("torch")
    from safetensors import safe_open  # the format's own reader

    for f in ck.files:
        with safe_open(f, framework="pt") as st:
            for name in st.keys():
                ref = st.get_tensor(name).view(torch.int16).numpy()
                assert np.array_equal(ck.raw(name).view(np.int16), ref), name


def test_gguf_read_by_gguf_py(model: Path, q4km: Path) -> None:
    ck = Checkpoint(model)
    reader = gguf.GGUFReader(q4km)
    names = [t.name for t in reader.tensors]
    # llama-quantize's order: tensors outside blocks, then block by block, names sorted
    assert names[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    assert names[3:12] == sorted(n for n in names if n.startswith("blk.0."))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["output.weight"] == "Q6_K" and types["blk.1.attn_v.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == "Q4_K" and types["blk.0.ffn_norm.weight"] == "F32"

    def field(key: str):  # noqa: ANN202
        f = reader.fields[key]
        return f.contents()

    assert field("general.architecture") == "llama" and field("general.name") == "tiny-llama"
    assert field("llama.block_count") == 2 and field("llama.attention.head_count_kv") == 2
    assert field("llama.rope.dimension_count") == 64 and field("general.file_type") == 15
    assert field("llama.embedding_length") == 256 and field("llama.feed_forward_length") == 1024
    # the data: refquant's quantization of the exactly widened source, Q rows in llama.cpp's rotary order
    t = {t.name: t for t in reader.tensors}
    x = ck.float32("model.layers.0.mlp.up_proj.weight")
    assert np.array_equal(np.asarray(t["blk.0.ffn_up.weight"].data).reshape(-1), rgguf.quantize(x, "q4_k").reshape(-1))
    q = ck.float32("model.layers.0.self_attn.q_proj.weight")
    d = 64  # head_dim; llama.cpp row j of head h is HF row h*d + j//2 + (j%2)*d/2
    j = np.arange(256) % d
    perm = (np.arange(256) // d) * d + j // 2 + (j % 2) * (d // 2)
    got = gguf.dequantize(t["blk.0.attn_q.weight"].data, t["blk.0.attn_q.weight"].tensor_type)
    assert np.array_equal(got.reshape(256, 256), rgguf.dequantize(rgguf.quantize(q[perm], "q4_k"), "q4_k", (256, 256)))
    k = ck.float32("model.layers.0.self_attn.k_proj.weight")  # 2 KV heads
    perm_k = (np.arange(128) // d) * d + (np.arange(128) % d) // 2 + (np.arange(128) % 2) * (d // 2)
    got_k = gguf.dequantize(t["blk.0.attn_k.weight"].data, t["blk.0.attn_k.weight"].tensor_type).reshape(128, 256)
    assert np.array_equal(got_k, rgguf.dequantize(rgguf.quantize(k[perm_k], "q4_k"), "q4_k", (128, 256)))
    norm = ck.float32("model.layers.0.input_layernorm.weight")
    assert np.array_equal(np.asarray(t["blk.0.attn_norm.weight"].data), norm)
    assert not (q4km.parent / "tiny.gguf.partial").exists()


@pytest.mark.parametrize("recipe", ["f16", "bf16", "q8_0", "q6_k", "q4_0"])
def test_other_gguf_recipes(model: Path, tmp_path: Path, recipe: str) -> None:
    out = quantize(model, tmp_path / "m.gguf", recipe, progress=False)
    reader = gguf.GGUFReader(out)
    ck = Checkpoint(model)
    x = ck.float32("model.layers.1.mlp.gate_proj.weight")
    t = next(t for t in reader.tensors if t.name == "blk.1.ffn_gate.weight")
    back = gguf.dequantize(t.data, t.tensor_type).reshape(x.shape)
    tol = {"f16": 1e-3, "bf16": 0.0, "q8_0": 0.01, "q6_k": 0.03, "q4_0": 0.12}[recipe]
    assert np.max(np.abs(back - x)) <= tol * np.max(np.abs(x)) + 1e-7


def test_executors_give_identical_bytes(model: Path, q4km: Path, tmp_path: Path) -> None:
    with cf.ThreadPoolExecutor(2) as ex:
        a = quantize(model, tmp_path / "threads.gguf", "q4_k_m", executor=ex, progress=False)
    with cf.ProcessPoolExecutor(2) as ex:
        b = quantize(model, tmp_path / "procs.gguf", "q4_k_m", executor=ex, max_in_flight=2, progress=False)
    assert a.read_bytes() == q4km.read_bytes() == b.read_bytes()


def test_dask_local_cluster(model: Path, q4km: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        out = quantize(model, tmp_path / "dask.gguf", "q4_k_m", executor=client.get_executor(), progress=False)
    assert out.read_bytes() == q4km.read_bytes()


class _Boom(RuntimeError):
    pass


def test_resume_after_failure_is_byte_identical(model: Path, q4km: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "r.gguf"
    calls = []
    real = Journal.record

    def record(self, unit, tensors):  # noqa: ANN001, ANN202
        if len(calls) == 7:
            raise _Boom("killed")
        calls.append(unit)
        return real(self, unit, tensors)

    monkeypatch.setattr(Journal, "record", record)
    with pytest.raises(_Boom):
        quantize(model, dst, "q4_k_m", progress=False)
    monkeypatch.setattr(Journal, "record", real)
    assert not dst.exists()
    journal = (tmp_path / "r.gguf.partial" / "journal.jsonl").read_text().splitlines()
    assert len(journal) == 7
    # a torn last line (killed mid-append) is ignored and that unit redone
    with open(tmp_path / "r.gguf.partial" / "journal.jsonl", "a") as f:
        f.write('{"unit": 7, "crc')
    quantize(model, dst, "q4_k_m", progress=False)
    assert dst.read_bytes() == q4km.read_bytes()
    assert not (tmp_path / "r.gguf.partial").exists()


def test_resume_after_sigkill(model: Path, q4km: Path, tmp_path: Path) -> None:
    dst = tmp_path / "k.gguf"
    journal = tmp_path / "k.gguf.partial" / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "refquant", "quantize", str(model), "--to", "q4_k_m", "--out", str(dst), "-q"]
    # slow each unit down so that the kill lands mid-run
    slow = [sys.executable, "-c",
            "import sys, time, refquant.checkpoint; q = sys.modules['refquant.checkpoint.quantize']; real = q._call\n"
            "def call(u, ck):\n    time.sleep(0.1); return real(u, ck)\n"
            "q._call = call\nimport sys; from refquant.apps.cli import main; sys.exit(main(sys.argv[1:]))",
            *cmd[3:]]
    proc = subprocess.Popen(slow, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not journal.is_file() or len(journal.read_bytes().splitlines()) < 5):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not dst.exists()
    done = len(journal.read_bytes().splitlines())
    assert 5 <= done < 21
    subprocess.run(cmd, env=env, check=True, timeout=120)
    assert dst.read_bytes() == q4km.read_bytes()


def test_a_different_job_is_not_resumed(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "x.gguf"
    real = Journal.record
    monkeypatch.setattr(Journal, "record", lambda self, u, t: (_ for _ in ()).throw(_Boom()) if u == 3
                        else real(self, u, t))
    with pytest.raises(_Boom):
        quantize(model, dst, "q4_k_m", progress=False)
    monkeypatch.setattr(Journal, "record", real)
    with pytest.raises(ValueError, match="different source, recipe or options"):
        quantize(model, dst, "q8_0", progress=False)
    quantize(model, dst, "q8_0", progress=False, restart=True)
    assert gguf.GGUFReader(dst).fields["general.file_type"].contents() == 7


def test_full_disk_names_the_tensor_and_resumes(model: Path, q4km: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import refquant.checkpoint.journal as jmod

    dst = tmp_path / "d.gguf"
    real_open = jmod._atomic_open

    def full(path, mode):  # noqa: ANN001, ANN202
        if path.name == "00005.bin":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode)

    monkeypatch.setattr(jmod, "_atomic_open", full)
    with pytest.raises(OSError, match=r"'blk\.0\.attn_output\.weight'.*No space left.*rerun to resume") as info:
        quantize(model, dst, "q4_k_m", progress=False)
    assert info.value.errno == errno.ENOSPC and not dst.exists()
    monkeypatch.setattr(jmod, "_atomic_open", real_open)
    quantize(model, dst, "q4_k_m", progress=False)
    assert dst.read_bytes() == q4km.read_bytes()


def test_truncated_shard_names_the_tensor(model: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    shard = bad / "model-00002-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 1000])
    last = list(Checkpoint(model).tensors)[-1]
    with pytest.raises(SafetensorsError, match=f"{last}.*truncated"):
        quantize(bad, tmp_path / "bad.gguf", "q4_k_m", progress=False)
    assert not (tmp_path / "bad.gguf").exists() and not (tmp_path / "bad.gguf.partial").exists()


def test_shape_the_recipe_cannot_take(tmp_path: Path) -> None:
    cfg = synthetic.llama_config(hidden=64, n_layers=1, n_heads=2, n_kv_heads=2, vocab=64)
    src = synthetic.write_llama(tmp_path / "m64", cfg)
    with pytest.raises(ValueError, match=r"'output\.weight'.*row length 64.*q4_k block size 256"):
        quantize(src, tmp_path / "m.gguf", "q4_k", progress=False)
    out = quantize(src, tmp_path / "m.gguf", "q4_k_m", progress=False)  # the mixture falls back as llama.cpp
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == "Q5_0" and types["output.weight"] == "Q8_0"


def test_nf4_folder(model: Path, tmp_path: Path) -> None:
    from refquant import bnb
    from safetensors.numpy import load_file

    out = quantize(model, tmp_path / "nf4", "nf4-dq", progress=False, max_shard_bytes=300_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((out / f).is_file() for f in files)
    tensors = {}
    for f in files:
        tensors.update(load_file(out / f))  # the format's own reader
    config = json.loads((out / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc["quant_method"] == "bitsandbytes" and qc["load_in_4bit"] and qc["bnb_4bit_quant_type"] == "nf4"
    assert qc["bnb_4bit_use_double_quant"] is True and qc["bnb_4bit_compute_dtype"] == "bfloat16"
    transformers = pytest.importorskip("transformers")
    bc = transformers.BitsAndBytesConfig.from_dict(qc)
    assert bc.load_in_4bit and bc.bnb_4bit_quant_type == "nf4" and bc.bnb_4bit_use_double_quant
    assert {k: v for k, v in bc.to_dict().items() if k in qc} == {k: v for k, v in qc.items() if k in bc.to_dict()}
    ck = Checkpoint(model)
    name = "model.layers.1.self_attn.o_proj.weight"
    q = bnb.QuantState.from_state_dict(tensors, name)
    assert q.shape == (256, 256) and q.dtype == "bfloat16" and q.nested is not None
    expected = bnb.quantize_4bit(np.asarray(ck.raw(name)), "nf4", 64, double_quant=True)
    assert np.array_equal(bnb.dequantize_4bit(q), bnb.dequantize_4bit(expected))
    norm = np.asarray(ck.raw("model.norm.weight")).view(np.uint16)
    assert np.array_equal(tensors["model.norm.weight"].view(np.uint16), norm)
    assert tensors["lm_head.weight"].shape == (512, 256)  # lm_head stays unquantized (transformers' default)
    assert tensors[name].dtype == np.uint8 and tensors[name].shape == (256 * 256 // 2, 1)


def test_cli_help_lists_recipes() -> None:
    from refquant.apps.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["quantize"].format_help()
    assert "q4_k_m" in text and "nf4-dq" in text and "--dask" in text


def test_cli_with_dask_address_and_backend(model: Path, q4km: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("numba")
    from refquant.apps.cli import main

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        assert main(["quantize", str(model), "--to", "Q4_K_M", "--out", str(tmp_path / "c.gguf"), "-q",
                     "--dask", cl.scheduler_address, "--backend", "numba"]) == 0
    assert (tmp_path / "c.gguf").read_bytes() == q4km.read_bytes()


@pytest.mark.oracle
def test_llama_cpp_runs_the_file(model: Path, tmp_path: Path) -> None:
    """llama.cpp (llama-cpp-python) loads the f32 GGUF and its logits match the NumPy forward."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from refquant.model import CausalLM

    from refquant.io.gguf_file import read, write
    from refquant.io.gguf_metadata import GGUFValue, GGUFValueType

    out = quantize(model, tmp_path / "f32.gguf", "f32", progress=False)
    assert gguf.GGUFReader(out).fields["tokenizer.ggml.model"].contents() == "no_vocab"
    # the synthetic model has no tokenizer; give llama.cpp a placeholder SentencePiece vocabulary
    # so that its Python binding knows n_vocab (tensors and hyperparameters are refquant's)
    def run_llama_cpp(path: Path, tokens: list[int]) -> np.ndarray:
        f = read(path)
        meta = {k: v for k, v in f.metadata.items() if k != "tokenizer.ggml.model"}
        n_vocab = 512
        meta.update({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [f"<t{i}>" for i in range(n_vocab)],
                     "tokenizer.ggml.scores": np.zeros(n_vocab, np.float32),
                     "tokenizer.ggml.token_type": np.ones(n_vocab, np.int32),
                     "tokenizer.ggml.bos_token_id": GGUFValue(1, GGUFValueType.UINT32),
                     "tokenizer.ggml.eos_token_id": GGUFValue(2, GGUFValueType.UINT32)})
        with_vocab = path.with_name(path.stem + "-vocab.gguf")
        write(with_vocab, dict(f.tensors), meta)
        llm = llama_cpp.Llama(model_path=str(with_vocab), n_ctx=16, logits_all=True, verbose=False)
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)

    tokens = [3, 141, 59, 26, 5]
    got = run_llama_cpp(out, tokens)
    logits = CausalLM.from_pretrained(model).forward(np.array([tokens]))
    assert np.allclose(got, logits[0], atol=1e-3 * np.abs(logits).max())
    # a quantized file runs too (llama.cpp also quantizes the activations to 8 bits here)
    q8 = run_llama_cpp(quantize(model, tmp_path / "q8.gguf", "q8_0", progress=False), tokens)
    assert np.linalg.norm(q8 - logits[0]) < 0.05 * np.linalg.norm(logits[0])


def test_progress_bar_shows_rate_and_eta() -> None:
    import io

    from refquant.checkpoint.journal import Progress

    out = io.StringIO()
    bar = Progress(4e6, enabled=True, stream=out)
    bar.skip(1e6)  # resumed work: counted as done, not in the rate
    time.sleep(0.01)
    bar.advance(1e6, "blk.0.attn_q.weight")
    bar.close()
    text = out.getvalue()
    assert " 50.0% " in text and "B/s ETA" in text and "blk.0.attn_q.weight" in text and text.endswith("s\n")
    quiet = io.StringIO()
    Progress(10, enabled=False, stream=quiet).advance(5)
    assert quiet.getvalue() == ""


def test_bare_files_and_non_finite_tensors(model: Path, tmp_path: Path) -> None:
    files = sorted(str(p) for p in model.glob("*.safetensors"))
    with pytest.raises(ValueError, match="no config.json"):
        quantize(files, tmp_path / "bare.gguf", "q8_0", progress=False)
    ck = Checkpoint(files)
    assert ck.folder is None and len(ck.tensors) == 21
    from refquant.checkpoint.safetensors_io import write_safetensors

    bad = tmp_path / "nan"
    bad.mkdir()
    (bad / "config.json").write_text((model / "config.json").read_text())
    specs = [(n, "F32", i.shape) for n, i in ck.tensors.items()]

    def payload(i: int, name: str):  # noqa: ANN202
        x = ck.float32(name).copy()
        if name == "model.layers.1.mlp.up_proj.weight":
            x[3, 5] = np.nan
        yield x

    with open(bad / "model.safetensors", "wb") as f:
        write_safetensors(f, specs, payload)
    with pytest.raises(ValueError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' holds 1 NaN/inf"):
        quantize(bad, tmp_path / "nan.gguf", "q4_k_m", progress=False)
    assert not (tmp_path / "nan.gguf").exists()
    assert (tmp_path / "nan.gguf.partial" / "journal.jsonl").is_file()
    # a source rewritten since the interruption is not mixed with the old parts
    os.utime(bad / "model.safetensors", ns=(1, 1))
    with pytest.raises(ValueError, match="different source"):
        quantize(bad, tmp_path / "nan.gguf", "q4_k_m", progress=False)


def test_row_blocks_give_the_same_bytes(model: Path, q4km: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 rows of 256 per block: Q/K blocks round to whole 64-row heads, others split unevenly
    monkeypatch.setattr(sys.modules["refquant.checkpoint.quantize"], "_CHUNK_ELEMENTS", 3 * 256)
    out = quantize(model, tmp_path / "blocks.gguf", "q4_k_m", progress=False)
    assert out.read_bytes() == q4km.read_bytes()


def test_importance_matrix(model: Path, q4km: Path, tmp_path: Path) -> None:
    from refquant.io import Imatrix, ImatrixEntry, write_imatrix

    ck = Checkpoint(model)
    rng = np.random.default_rng(3)
    from refquant.checkpoint.llama import gguf_name

    entries = {}
    for name, info in ck.tensors.items():
        g = gguf_name(name)
        if len(info.shape) == 2 and g.startswith("blk."):
            entries[g] = ImatrixEntry(rng.uniform(0.1, 4.0, (1, info.shape[1])).astype(np.float32),
                                      np.array([1], np.int64))
    path = tmp_path / "imatrix.gguf"
    write_imatrix(path, Imatrix(entries, ["synthetic"], 1, 512))
    out = quantize(model, tmp_path / "im.gguf", "q4_k_m", imatrix=path, progress=False)
    assert out.read_bytes() != q4km.read_bytes()
    t = {t.name: t for t in gguf.GGUFReader(out).tensors}
    x = ck.float32("model.layers.1.mlp.gate_proj.weight")
    expected = rgguf.quantize(x, "q4_k", imatrix=entries["blk.1.ffn_gate.weight"].importance())
    assert np.array_equal(np.asarray(t["blk.1.ffn_gate.weight"].data).reshape(-1), expected.reshape(-1))
    q = ck.float32("model.layers.0.self_attn.q_proj.weight")  # importance is per column: unchanged by the Q permutation
    j = np.arange(256) % 64
    perm = (np.arange(256) // 64) * 64 + j // 2 + (j % 2) * 32
    expected = rgguf.quantize(q[perm], "q4_k", imatrix=entries["blk.0.attn_q.weight"].importance())
    assert np.array_equal(np.asarray(t["blk.0.attn_q.weight"].data).reshape(-1), expected.reshape(-1))
    bad = Imatrix({"blk.0.attn_q.weight": ImatrixEntry(np.ones((1, 100), np.float32), np.array([1]))})
    with pytest.raises(ValueError, match=r"imatrix entry 'blk\.0\.attn_q\.weight' has shape \(100,\)"):
        quantize(model, tmp_path / "bad.gguf", "q4_k_m", imatrix=bad, progress=False)
    with pytest.raises(ValueError, match="imatrix applies to the GGUF recipes"):
        quantize(model, tmp_path / "bad", "nf4", imatrix=bad, progress=False)


def test_iq_mixture_without_imatrix_is_refused(model: Path, tmp_path: Path) -> None:
    """llama-quantize's rule: IQ2_XXS / IQ2_XS / IQ2_S / IQ1_S (IQ1_M) tensors need an imatrix."""
    with pytest.raises(ValueError, match=r"recipe='iq2_xxs' writes tensor 'blk\.0\.\w+\.weight' as iq2_xxs.*"
                                         r"importance matrix"):
        quantize(model, tmp_path / "noim.gguf", "iq2_xxs", progress=False)
    assert not (tmp_path / "noim.gguf").exists()
