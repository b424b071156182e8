"""The adaptation check (issue 17, item 3): held-out signal, both scores, the warning, the record.

End to end it runs in GPL (tests/test_gpl.py, and the anti-oracle run of tests/test_gpl_oracle.py,
where it must warn) and QGen (tests/test_qgen.py).
"""

from __future__ import annotations

import json

import pytest
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import PT2DPR
from beir_peft.data import load_dataset
from beir_peft.training.adaptation_check import (
    HeldOutSignal,
    check_adaptation,
    held_out_sample,
    recorded_check,
    run_check,
    summary,
    warning,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An untrained PT2-DPR folder on a tiny BERT."""
    root = tmp_path_factory.mktemp("check")
    backbone = str(build_tiny_bert(root / "bert"))
    PT2DPR(backbone).save(root / "pt2")
    return backbone, root / "pt2"


@pytest.fixture(scope="module")
def signal():
    data = load_dataset("demo")
    rows = [
        {"_id": q, "text": data.queries[q], "doc_id": next(iter(data.qrels[q]))}
        for q in list(data.qrels)[:12]
    ]
    return HeldOutSignal.generated_queries(rows, data.corpus)


def test_the_held_out_sample_is_a_seeded_tenth_at_most():
    ids = [f"q{i}" for i in range(100)]
    assert len(held_out_sample(ids, 200, 0)) == 10 and len(held_out_sample(ids, 4, 0)) == 4
    assert held_out_sample(ids, 5, 1) == held_out_sample(ids[::-1], 5, 1)[::-1]  # any order, the same ids
    assert held_out_sample(ids, 5, 1) != held_out_sample(ids, 5, 2)
    assert (
        held_out_sample(ids[:19], 200, 0) == [] and held_out_sample(ids, 0, 0) == []
    )  # one query ranks nothing


def test_the_signal_is_each_query_with_its_source_passage(signal):
    assert len(signal.queries) == 12 and set(signal.qrels) == set(signal.queries)
    assert all(set(judged) <= set(signal.corpus) for judged in signal.qrels.values())


def test_a_model_no_better_than_its_start_warns_and_the_folder_records_it(saved, signal):
    backbone, folder = saved
    start, adapted = beir_peft.load(folder), beir_peft.load(folder)
    check = check_adaptation(start, adapted, signal, start_name=backbone)
    assert check["start"] == check["adapted"] and check["gain"] == 0 and not check["better"]  # the same model
    assert check["held_out_queries"] == 12 and check["metric"] == "NDCG@10"
    assert check["p_value"] == 1.0  # no difference: no evidence of one
    line = warning(check)
    assert line.startswith("warning: the adapted model is not better than its start") and "\n" not in line

    lines = []
    run_check(folder, signal, lambda: start, lambda: adapted, start_name=backbone, echo=lines.append)
    assert lines == [line] and recorded_check(folder) == check
    assert line in (folder / "README.md").read_text()
    assert beir_peft.load(folder).method == "pt2-dpr"  # the folder still loads strictly

    def unused():
        raise AssertionError("a recorded check is not scored again")

    again = []
    run_check(folder, signal, unused, unused, start_name=backbone, echo=again.append)
    assert (
        again == lines
        and json.loads((folder / "config.json").read_text())["training"]["adaptation_check"] == check
    )


def test_a_better_model_does_not_warn():
    check = {
        "better": True,
        "metric": "NDCG@10",
        "start": 0.5,
        "adapted": 0.6,
        "gain": 0.1,
        "held_out_queries": 9,
        "signal": "held-out generated queries, each with the passage it was generated from",
        "p_value": 0.0312,
    }
    assert warning(check) is None
    assert summary(check) == (
        "adaptation check: NDCG@10 0.5000 -> 0.6000 (+0.1000, p=0.031) on 9 held-out generated queries"
    )


def test_nothing_held_out_no_check(saved):
    _, folder = saved
    assert run_check(folder, None, None, None, start_name="x") is None
