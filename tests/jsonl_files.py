"""Records on disk for the tests: JSON Lines written and read back, and short generated patent texts."""

import json
import random

# A small vocabulary that a tokenizer trained in a test covers.
WORDS = "valve rotor housing sensor seed signal circuit layer wafer antenna blade pump coil frame".split()


def write_jsonl(path, rows):
    """Write ``rows`` (dicts) to ``path`` as JSON Lines; returns ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def short_records(n, seed=0):
    """``n`` rows with an id, a 1-3 word title and a 1-8 word abstract from :data:`WORDS` (no labels)."""
    generator = random.Random(seed)
    return [
        {"id": f"P{i:06d}", "title": " ".join(generator.choices(WORDS, k=generator.randint(1, 3))),
         "abstract": " ".join(generator.choices(WORDS, k=generator.randint(1, 8)))}
        for i in range(n)
    ]
