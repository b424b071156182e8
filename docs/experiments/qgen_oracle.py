"""QGen through the oracle path, with its numbers (docs/results.md, "QGen with oracle queries").

The two runs of tests/test_qgen.py's oracle tests: the SciFact train questions as the generated
queries (each with its judged abstract, or, mismatched, with the abstract of the row half the file
away), the real all-MiniLM-L6-v2 `ft` student, one epoch of 32 at 32 tokens; evaluated on the
1,000-abstract SciFact test slice and the MS MARCO slice against the zero-shot backbone.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. python docs/experiments/qgen_oracle.py OUT.json
"""

import json
import random
import sys
import tempfile
from pathlib import Path

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import BeirDataset, load_dataset
from beir_peft.evaluation import evaluate_retriever
from beir_peft.methods.gpl import QGenConfig, oracle_queries, run_qgen
from beir_peft.models.loading import load_model

S = Path("../shared/datasets/scifact")
test = load_dataset(S, split="test")
judged = sorted({d for ds in test.qrels.values() for d in ds})
others = sorted(set(test.corpus) - set(judged))
kept = judged + random.Random(0).sample(others, 1000 - len(judged))
data = BeirDataset(test.name, test.path, "test", {d: test.corpus[d] for d in kept}, test.queries, test.qrels)
m = load_model()
m.model.max_seq_length = 32
zero = evaluate_retriever(m, data.corpus, data.queries, data.qrels, k_values=[10], show_progress_bar=False)
msm = load_dataset(Path("../shared/datasets/msmarco-dl19-5k"), split="test")
m.model.max_seq_length = 32
zero_msm = evaluate_retriever(m, msm.corpus, msm.queries, msm.qrels, k_values=[10], show_progress_bar=False)
train = load_dataset(S, split="train")
out = {"zero_shot": zero.metrics["NDCG@10"], "zero_shot_msmarco": zero_msm.metrics["NDCG@10"]}
for mismatched in (False, True):
    rows = oracle_queries(train.qrels, train.queries)
    if mismatched:
        half = len(rows) // 2
        rows = [{**r, "doc_id": rows[(i + half) % len(rows)]["doc_id"]} for i, r in enumerate(rows)]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = QGenConfig(
        preset="tiny",
        student="ft",
        batch_size=32,
        max_seq_length=32,
        checkpoint_every=0,
        device="cpu",
        held_out_queries=0,  # the published numbers: every pair trained on (before the adaptation check)
    )
    folder = run_qgen(
        train.corpus,
        tmp / "run",
        cfg,
        queries_file=tmp / "q.jsonl",
        dataset_name="scifact",
        show_progress_bar=False,
    )
    model = beir_peft.load(folder)
    r = evaluate_retriever(
        model, data.corpus, data.queries, data.qrels, k_values=[10], show_progress_bar=False
    )
    t = paired_t_test(zero.per_query_ndcg10, r.per_query_ndcg10, data.queries)
    model.model.max_seq_length = 32
    rm = evaluate_retriever(model, msm.corpus, msm.queries, msm.qrels, k_values=[10], show_progress_bar=False)
    tm = paired_t_test(zero_msm.per_query_ndcg10, rm.per_query_ndcg10, msm.queries)
    rec = json.loads((folder / "config.json").read_text())["training"]
    out["mismatched" if mismatched else "oracle"] = {
        "ndcg10": r.metrics["NDCG@10"],
        "delta": t.delta,
        "p": t.p_value,
        "msmarco_ndcg10": rm.metrics["NDCG@10"],
        "msmarco_delta": tm.delta,
        "msmarco_p": tm.p_value,
        "steps": rec["steps"],
        "pairs": rec["pairs"],
        "epoch_seconds": rec["epoch_seconds"],
    }
    print(out, flush=True)
Path(sys.argv[1] if len(sys.argv) > 1 else "qgen_oracle.json").write_text(json.dumps(out, indent=1))
