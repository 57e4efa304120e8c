"""Nearest patents by cosine similarity of a trained classifier's embeddings (prior-art style search).

Embeds the title and abstract of the first ``--limit`` records of a JSON Lines file (read in place) with
``PatentClassifier.embed`` (the encoder's pooled, L2-normalized vectors), then prints, for each query, the
``--top`` most similar patents::

    python examples/nearest_patents.py --model outputs/demo/finetune \
        --query "face recognition under varying illumination" --query "battery state of charge estimation"

Without ``--query`` the first three records are the queries (their nearest other patents are shown). For a
whole corpus, write the vectors once with ``modernpatent embed --output vectors.parquet`` and search those.
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from modernpatent_hf.data.rows import open_text
from modernpatent_hf.predictor import PatentClassifier

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "patents_us_gpatents_ai.jsonl.gz"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint directory saved by this package")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSON Lines records with id, title, abstract")
    parser.add_argument("--limit", type=int, default=2000, help="records embedded, from the start of --data")
    parser.add_argument("--query", action="append", default=[], help="a query text (repeatable)")
    parser.add_argument("--top", type=int, default=5, help="nearest patents shown per query")
    args = parser.parse_args(argv)

    with open_text(args.data) as handle:
        records = [json.loads(line) for line in itertools.islice(handle, args.limit)]
    texts = [f"{record.get('title') or ''}\n{record.get('abstract') or ''}" for record in records]
    classifier = PatentClassifier.from_pretrained(args.model)
    vectors = classifier.embed(texts)  # [N, H], rows of norm 1: a dot product is the cosine
    queries = args.query or texts[:3]
    query_vectors = classifier.embed(queries)
    for query, similarities in zip(queries, query_vectors @ vectors.T):
        order = [index for index in np.argsort(-similarities, kind="stable") if texts[index] != query][: args.top]
        print(f"query: {query.splitlines()[0][:100]}")
        for index in order:
            print(f"  {similarities[index]:.3f}  {records[index]['id']}  {(records[index].get('title') or '')[:90]}")


if __name__ == "__main__":
    main()
