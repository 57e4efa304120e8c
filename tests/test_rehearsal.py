"""The cluster run rehearsed (the short version of `make rehearsal`): the README's commands, unchanged but for what a
CPU forces, against stand-ins that the real Hub ids resolve to in an offline Hugging Face cache."""

import json
import re

import pyarrow.parquet as pq
import pytest

from modernpatent_hf.data.records import load_dataset_dir
from modernpatent_hf.rehearsal_steps import REHEARSAL_SIZES, format_rehearsal, rehearse

from testing_utils import REPO_ROOT

pytestmark = pytest.mark.slow  # minutes: `pytest -m "not slow"` leaves these out


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal") / "run"
    return out, rehearse(str(out), size="short", repo_root=str(REPO_ROOT))


def test_every_cluster_command_ends_as_it_should(rehearsal):
    out, summary = rehearsal
    table = format_rehearsal(summary)
    assert summary["ok"], table
    # The paths it reports are where the output lies, not the folder it was written in before being moved there.
    assert summary["out_dir"] == str(out) and (out / "logs").is_dir()
    assert json.loads((out / "rehearsal.json").read_text())["out_dir"] == str(out)
    assert f"logs in {out}/logs" in table
    assert [step["step"] for step in summary["steps"]] == [
        "test year missing",
        "finetune, killed",
        "finetune, resumed",
        "pretrain MLM",
        "predict by Hub id",
        "embed by Hub id",
    ]
    statuses = {step["step"]: step["status"] for step in summary["steps"]}
    assert statuses["finetune, killed"] == "killed" and statuses["test year missing"] == 1, table
    assert "rehearsal passed" in table and "test_f1@1" in table


def test_the_killed_fine_tuning_resumes_from_its_checkpoint_and_tests_on_the_2016_set(rehearsal):
    out, summary = rehearsal
    plan = REHEARSAL_SIZES["short"]
    resumed = next(step for step in summary["steps"] if step["step"] == "finetune, resumed")
    log = open(resumed["log"]).read()
    # The steps ran in the folder that was moved to `out` when the rehearsal completed.
    checkpoint = f"checkpoint-{plan.finetune_steps // 2}"
    assert re.search(rf"resuming from {re.escape(str(out))}\S*/finetune/{checkpoint}\b", log), log[-3000:]
    state = json.loads((out / "finetune" / "trainer_state.json").read_text())
    assert state["global_step"] == plan.finetune_steps
    assert 0.0 <= summary["test_metrics"]["test_f1@1"] <= 1.0
    # The test split is the 2016 stand-in, whole but for codes outside the training label space; the training rows
    # that repeat three of its texts left training instead.
    splits = load_dataset_dir(str(out / "finetune" / "data"))
    assert {date[:4] for date in splits["test"]["date"]} == {"2016"}
    assert plan.test_rows - 10 <= len(splits["test"]) <= plan.test_rows
    stats = json.loads((out / "finetune" / "data" / "stats.json").read_text())
    assert stats["counts"]["records_removed_for_test_overlap"] == 3
    assert stats["counts"]["bad_rows"] == 2  # the stand-in's bad date and empty id, skipped and counted


def test_predict_and_embed_load_the_published_checkpoint_by_its_hub_id(rehearsal):
    out, summary = rehearsal
    plan = REHEARSAL_SIZES["short"]
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == plan.test_rows
    first = json.loads(lines[0])
    assert len(first["predictions"]) == 3 and all(len(item["code"]) == 4 for item in first["predictions"])
    table = pq.read_table(out / "embeddings.parquet")
    assert table.num_rows == plan.test_rows and "embedding" in table.column_names
    published = summary["cache"]
    assert "0zo/google_patentsview_claims_2016" in published and "answerdotai/ModernBERT-base" in published
