"""The index of labelled patents at scale: build time, size on disk, memory and query throughput of each index kind.

    python benchmarks/evidence_index.py [--sizes 100000,1000000] [--dims 768,384] [--kinds flat,ivf,hnsw,ivfpq]
        [--max-rows hnsw=100000] [--queries 1000] [--k 10] [--rounds 3] [--work DIR] [--out FILE]

Corpus: N random unit vectors (dimension 768, ModernBERT-base's, and 384, all-MiniLM-L6-v2's), generated in batches
of 10,000 with ids and one code each, written by the package's own path (:func:`write_index`: an Arrow file, the
datasets.Dataset saved to disk, the FAISS index trained, filled and saved). Each (dimension, size, kind) runs in a
fresh child process, so that its memory figures are its own:

    build s          write_index from the first generated batch to the saved directory (generation included)
    disk MiB         the index directory (dataset/ holds the float32 vectors whatever the kind; the .faiss file apart)
    faiss MiB        the saved FAISS index, which a search holds in memory
    search RSS MiB   anonymous resident memory of the process after EvidenceIndex.load (the FAISS index and the
                     near-duplicate keys; the dataset's Arrow pages are memory-mapped, not counted)
    build peak MiB   the child's peak resident memory over the build
    queries/s        EvidenceIndex.search of batches of 100 queries (rows of the corpus plus noise), K neighbours, no
                     exclusion; median over --rounds rounds of --queries queries
    recall@K         share of the exact K nearest (numpy brute force, 100 queries) that the index returns

Random vectors have no clusters, the worst case for ivf, hnsw and ivfpq recall: real embeddings do better. Prints
JSON, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from typing import Dict, Iterator, List

import numpy as np
import pyarrow as pa

from modernpatent_hf.evidence_index import FAISS_FILE, EvidenceIndex, index_features, record_batch, write_index

BATCH = 10_000
QUERY_BATCH = 100
RECALL_QUERIES = 100
CODES = ("A01B", "G06F", "H01L", "H04W")


def corpus_vector_batch(start: int, stop: int, dim: int, seed: int) -> np.ndarray:
    """Rows ``start:stop`` of the corpus: the same vectors whatever the batch boundaries (a seed per batch of 10,000)."""
    assert start % BATCH == 0
    rows = []
    for begin in range(start, stop, BATCH):
        generator = np.random.default_rng([seed, begin // BATCH])
        block = generator.standard_normal((min(BATCH, stop - begin), dim), dtype=np.float32)
        rows.append(block / np.linalg.norm(block, axis=1, keepdims=True))
    return np.concatenate(rows)


def corpus_batches(rows: int, dim: int, seed: int) -> Iterator[pa.RecordBatch]:
    schema = index_features(dim).arrow_schema
    for start in range(0, rows, BATCH):
        stop = min(start + BATCH, rows)
        vectors = corpus_vector_batch(start, stop, dim, seed)
        ids = [f"P{i}" for i in range(start, stop)]
        codes = [[CODES[i % len(CODES)]] for i in range(start, stop)]
        zeros = np.zeros(stop - start, dtype=np.uint64)
        yield record_batch(schema, ids, codes, zeros, zeros, vectors)


def anon_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def directory_mib(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return total / 2**20


def measure(config: Dict) -> Dict:
    """One (dimension, size, kind) in this (child) process."""
    import faiss

    faiss.omp_set_num_threads(config["threads"])
    rows, dim, kind, seed = config["rows"], config["dim"], config["kind"], 0
    path = os.path.join(config["work"], f"{kind}-{dim}-{rows}")
    start = time.perf_counter()
    info = write_index(corpus_batches(rows, dim, seed), path, kind=kind, progress=False)
    build_seconds = time.perf_counter() - start
    build_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    before_load = anon_rss_mib()
    index = EvidenceIndex.load(path)
    search_rss = anon_rss_mib() - before_load

    generator = np.random.default_rng(1)
    picks = generator.choice(rows, size=config["queries"], replace=False)
    queries = np.empty((len(picks), dim), dtype=np.float32)
    for begin in np.unique(picks // BATCH * BATCH):  # each batch of the corpus generated once
        members = np.flatnonzero(picks // BATCH * BATCH == begin)
        queries[members] = corpus_vector_batch(begin, min(begin + BATCH, rows), dim, seed)[picks[members] - begin]
    queries += 0.05 * generator.standard_normal(queries.shape, dtype=np.float32) / np.sqrt(dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index.search(queries[:QUERY_BATCH], config["k"])  # warm
    rates = []
    for _ in range(config["rounds"]):
        tick = time.perf_counter()
        for begin in range(0, len(queries), QUERY_BATCH):
            index.search(queries[begin : begin + QUERY_BATCH], config["k"])
        rates.append(len(queries) / (time.perf_counter() - tick))

    sample = queries[:RECALL_QUERIES]
    best = np.full((len(sample), config["k"]), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(sample), config["k"]), dtype=np.int64)
    for begin in range(0, rows, 100_000):  # exact neighbours, 100,000 corpus rows at a time
        block = corpus_vector_batch(begin, min(begin + 100_000, rows), dim, seed)
        scores = np.concatenate([best, sample @ block.T], axis=1)
        ids = np.concatenate([best_ids, np.arange(begin, begin + len(block))[None].repeat(len(sample), 0)], axis=1)
        top = np.argsort(-scores, axis=1)[:, : config["k"]]
        best, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    found = index.search(sample, config["k"]).positions
    recall = np.mean([len(set(found[i]) & set(best_ids[i])) / config["k"] for i in range(len(sample))])
    result = {
        "dim": dim,
        "rows": rows,
        "kind": kind,
        "factory": info["factory"],
        "search_parameters": info["search_parameters"],
        "build_seconds": round(build_seconds, 1),
        "disk_mib": round(directory_mib(path), 1),
        "faiss_mib": round(os.path.getsize(os.path.join(path, FAISS_FILE)) / 2**20, 1),
        "search_rss_mib": round(search_rss, 1),
        "build_peak_mib": round(build_peak, 1),
        "queries_per_second": round(statistics.median(rates), 1),
        "queries_per_second_rounds": [round(rate, 1) for rate in rates],
        f"recall@{config['k']}": round(float(recall), 3),
    }
    del index
    shutil.rmtree(path)
    return result


def markdown(results: List[Dict], k: int) -> str:
    lines = [
        f"| dim | rows | kind | build s | disk MiB | faiss MiB | search RSS MiB | build peak MiB | queries/s | recall@{k} |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['dim']} | {row['rows']:,} | {row['kind']} | {row['build_seconds']} | {row['disk_mib']:,} | "
            f"{row['faiss_mib']:,} | {row['search_rss_mib']:,} | {row['build_peak_mib']:,} | "
            f"{row['queries_per_second']:,} | {row[f'recall@{k}']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--dims", default="768,384", help="vector dimensions, comma-separated")
    parser.add_argument("--kinds", default="flat,ivf,hnsw,ivfpq", help="index kinds, comma-separated")
    parser.add_argument(
        "--max-rows",
        default="hnsw=100000",
        help="kind=rows: skip larger corpora of that kind (hnsw builds slowly on 2 cores), comma-separated",
    )
    parser.add_argument("--queries", type=int, default=1000, help="queries per round")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="FAISS threads")
    parser.add_argument("--work", default=None, help="directory for the indexes (default: a temporary one)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    limits = {kind: int(rows) for kind, rows in (item.split("=") for item in args.max_rows.split(",") if item)}
    work = args.work or tempfile.mkdtemp(prefix="evidence-index-bench-")
    os.makedirs(work, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # a fresh process per configuration: its own peak memory
    results = []
    for dim in (int(value) for value in args.dims.split(",")):
        for rows in (int(value) for value in args.sizes.split(",")):
            for kind in args.kinds.split(","):
                if rows > limits.get(kind, rows):
                    continue
                config = {"rows": rows, "dim": dim, "kind": kind, "work": work, "threads": args.threads}
                config.update(queries=args.queries, k=args.k, rounds=args.rounds)
                with context.Pool(1) as pool:
                    result = pool.apply(measure, (config,))
                print(json.dumps(result), flush=True)
                results.append(result)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": args.threads},
        "settings": vars(args),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    print(markdown(results, args.k))


if __name__ == "__main__":
    main()
