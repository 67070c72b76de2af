"""The benchmarks' end-of-run bandwidth table (tests/bench/conftest.py's terminal summary)."""

from __future__ import annotations

from types import SimpleNamespace

from tests.bench._bandwidth import summary_lines


def _bench(name, info, seconds=0.002):
    return SimpleNamespace(fullname=f"tests/bench/test_x.py::{name}", extra_info=info,
                           stats=SimpleNamespace(min=seconds))


def test_summary_lists_bandwidth_benchmarks_only():
    lines = summary_lines([
        _bench("test_fast", {"GB/s": 12.5, "copy_GB/s": 25.0, "fraction_of_copy": 0.5}),
        _bench("test_no_bytes", {"seconds": 3.0}),
        _bench("test_gpu", {"GB/s": 900.0, "copy_GB/s": 25.0, "fraction_of_copy": 0.75, "seconds_cuda_events": 1e-4}),
    ])
    assert "25.00 GB/s" in lines[0]
    assert lines[1].split() == ["benchmark", "best", "ms", "GB/s", "of", "copy"]
    assert lines[2].split() == ["test_x.py::test_fast", "2.000", "12.50", "50.0%"]
    assert lines[3].split() == ["test_x.py::test_gpu", "0.100", "900.00", "75.0%"]
    assert len(lines) == 4


def test_summary_is_empty_without_bandwidth():
    assert summary_lines([]) == [] and summary_lines([_bench("t", {})]) == []
