"""medvit/provenance.py: where runs ran, counted in words."""

from __future__ import annotations

from medvit.provenance import where_they_ran


def test_each_environment_with_its_count_in_first_seen_order():
    h200 = {"device": "NVIDIA H200", "torch": "2.11.0+cu130", "threads": 16}
    cpu = {"device": "AMD EPYC", "torch": "2.14.1", "threads": 1}
    assert where_they_ran([h200, None, h200, cpu]) == (
        "NVIDIA H200, torch 2.11.0+cu130 (2 runs); not recorded (1 run); AMD EPYC, torch 2.14.1 (1 run)")
    assert where_they_ran([]) == ""
