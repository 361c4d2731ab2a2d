"""The demo's closing lines on the paper's two claims, from a run's summary (no run needed)."""

from georay.demo.run import claim_lines


def test_one_line_per_claim_from_the_runs_own_counts():
    out = {
        "countries": 8,
        "evaluate": {"n": 200, "country": {"correct": 190}},
        "curate_balance": {"rows": 1000, "kept": 870},
        "knowledge": {"reasoning": {"kept": 640}, "location": {"kept": 600}},
    }
    lines = claim_lines(out)
    assert len(lines) == 2
    curation, reasoning = lines
    assert curation.startswith("claim 1, curation pays") and "870 views" in curation
    assert "of 1000" in curation and "0.950" in curation
    assert reasoning.startswith("claim 2, reasoning helps") and "640 clue" in reasoning
    assert "600 labels" in reasoning
    assert all("benchmarks.claims" in line for line in lines)
