"""The backend registry, the reference backend and the OP_SPECS table."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import accel
from accel.dispatch import prepare_function
from accel.ops import OP_SPECS
from accel.reference import reference_function
from accel.registry import BackendLoadError, get_backend


def test_reference_backend_loads_and_declares_every_op():
    backend = accel.get_backend("reference")
    assert backend.name == "reference" and backend.device == "cpu"
    caps = backend.capabilities()
    assert set(caps) == set(OP_SPECS)
    for op, spec in OP_SPECS.items():
        assert caps[op].bit_exact
        if spec.formats is not None:
            assert caps[op].formats == frozenset(spec.formats)


@pytest.mark.parametrize("op", sorted(OP_SPECS))
def test_every_op_has_a_reference_function(op):
    fn = reference_function(op)
    assert callable(fn)
    assert getattr(accel.get_backend("reference").raw, op) is fn
    spec = OP_SPECS[op]
    assert spec.reference.startswith("refquant."), "reference functions live in refquant"
    assert spec.prepare is not None and spec.prepare.startswith("refquant.prepare."), \
        "every op of this repo names its argument preparation, owned by the reference"
    assert callable(prepare_function(op))
    assert spec.formats is None or len(spec.formats) == len(set(spec.formats)) > 0


def test_unknown_backend_name_lists_registered_ones():
    with pytest.raises(ValueError, match="unknown backend 'nope'.*reference"):
        get_backend("nope")


def test_bad_target_string():
    with pytest.raises((ValueError, BackendLoadError), match="module:factory|could not be loaded"):
        get_backend("justamodule:")


def test_third_party_backend_by_module_factory(tmp_path, monkeypatch):
    """A backend outside this repo, given as module:factory, without installing it."""
    (tmp_path / "thirdparty_backend.py").write_text(textwrap.dedent("""
        import numpy as np
        from accel.protocol import OpCapability

        class Mine:
            name = "mine"
            device = "cpu"
            def capabilities(self):
                return {}
            def asarray(self, x):
                return np.asarray(x)
            def to_numpy(self, x):
                return x

        def make():
            return Mine()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = get_backend("thirdparty_backend:make")
    assert backend.name == "mine"
    assert accel.supports(backend, "encode_float", "float16") is False


def test_backend_that_fails_to_load_names_itself(tmp_path, monkeypatch):
    (tmp_path / "broken_backend.py").write_text("def make():\n    raise RuntimeError('no device here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendLoadError, match="broken_backend:make.*no device here"):
        get_backend("broken_backend:make")


def test_object_without_protocol_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "notabackend.py").write_text("def make():\n    return object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendLoadError, match="lacks the Backend protocol"):
        get_backend("notabackend:make")


def test_available_backends_reports_reasons():
    infos = accel.available_backends()
    assert infos["reference"].loaded
    for name, info in infos.items():
        assert info.loaded or (info.reason and isinstance(info.reason, str)), name


def test_reference_backend_rejects_unknown_op():
    with pytest.raises(AttributeError, match="no op 'frobnicate'"):
        accel.get_backend("reference").frobnicate


