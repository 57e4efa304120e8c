"""`modernpatent report`: dataset statistics and imbalance plots, training-run curves and tables, the CLI."""

import gzip
import json
import re
from collections import Counter

import numpy as np
import pytest

from modernpatent_hf.reporting import write_report
from modernpatent_hf.reporting.dataset_report import dataset_report, plot_rank_frequency
from modernpatent_hf.reporting.run_report import per_label_metrics, plot_metric_curves, read_run, run_names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURVE_SCALES = {
    "f1@1": 1.0,
    "micro_f1": 0.8,
    "macro_f1": 0.2,
    "macro_precision": 0.3,
}  # metric = scale * the run's F1@1


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 10_000, f"{path} is only {len(data)} bytes"


def png_links(report_path):
    return set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report_path.read_text()))


# ------------------------------------------------------------------------------ fixtures
# 32 subclasses over single-label patents: the first is on 10 patents, the next 29 on 2 each, the last 2 on 1 each.
# Top-30 share by hand: (10 + 29 * 2) / (10 + 29 * 2 + 2) = 68 / 70.
TINY_CODES = [f"{'ABCDEFGHY'[i % 9]}{i + 1:02d}B" for i in range(32)]
TINY_PATENTS = [10] + [2] * 29 + [1, 1]


@pytest.fixture(scope="module")
def tiny_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "records.jsonl"
    rows = [
        {"id": f"US{code}{n}", "cpc": [code], "title": f"device {code}", "abstract": f"an apparatus number {n}"}
        for code, patents in zip(TINY_CODES, TINY_PATENTS)
        for n in range(patents)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_run(run_dir, f1_by_step, final_f1, with_results=True):
    """A minimal Trainer output directory: log history with training and eval entries, and all_results.json."""
    run_dir.mkdir(parents=True)
    history = []
    for step, f1 in f1_by_step.items():
        history.append({"step": step, "loss": 1.0 / step, "learning_rate": 1e-4})
        history.append(
            {"step": step, "epoch": step / 30, **{f"eval_{key}": f1 * scale for key, scale in CURVE_SCALES.items()}}
        )
    last = max(f1_by_step)
    history.append(
        {"step": last, "eval_f1@1": f1_by_step[last]}
    )  # the recipe's evaluation after training repeats a step
    (run_dir / "trainer_state.json").write_text(json.dumps({"global_step": last, "log_history": history}))
    if with_results:
        metrics = {}
        for prefix in ("eval", "test"):
            metrics.update(
                {
                    f"{prefix}_f1@1": final_f1,
                    f"{prefix}_precision@1": 0.5,
                    f"{prefix}_precision@1_class": 0.7,
                    f"{prefix}_precision@1_section": 0.9,
                    f"{prefix}_macro_f1": 0.05,
                }
            )
        (run_dir / "all_results.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs whose directories share a basename, so their names need the parent."""
    root = tmp_path_factory.mktemp("runs")
    return [
        write_run(root / "lr1e-4" / "run", {10: 0.10, 20: 0.20, 30: 0.25}, final_f1=0.2512),
        write_run(root / "lr3e-4" / "run", {10: 0.15, 20: 0.30, 30: 0.35}, final_f1=0.3567),
    ]


# ------------------------------------------------------------------------------ dataset report
def test_top30_share_and_section_table_match_hand_counts(tiny_jsonl, tmp_path):
    markdown, summary = dataset_report(str(tiny_jsonl), str(tmp_path))
    assert summary["stats"]["records"] == sum(TINY_PATENTS)
    assert summary["stats"]["top30_share"] == pytest.approx(68 / 70)
    assert "97.1 % of the label occurrences" in markdown
    # Section A holds codes 0, 9, 18 and 27: 10 + 2 + 2 + 2 = 16 of 70 occurrences, on 16 of 70 patents.
    assert "| A | Human necessities | 16 | 22.9 | 16 | 22.9 | 4 |" in markdown
    assert "| D | Textiles; paper | 7 | 10.0 |" in markdown  # codes 3, 12, 21, 30: 2 + 2 + 2 + 1
    for name in summary["figures"]:
        assert_png(tmp_path / name)


def test_power_law_slope_is_recovered_and_plotted_on_log_axes(tmp_path):
    ranks = np.arange(1, 201)
    counts = {f"code{r}": int(round(10_000 * r**-1.2)) for r in ranks}
    figure, slope = plot_rank_frequency(counts, str(tmp_path / "rank.png"))
    assert slope == pytest.approx(-1.2, abs=0.05)
    axes = figure.axes[0]
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    assert any("-1.2" in text.get_text() for text in axes.get_legend().get_texts())
    assert_png(tmp_path / "rank.png")


def test_report_of_a_generated_dataset_dir_embeds_its_plots(tmp_path):
    from modernpatent_hf.data.synthetic import write_synthetic_corpus

    write_synthetic_corpus(str(tmp_path / "data"), n=400, seed=1, num_subclasses=60)
    summary = write_report(str(tmp_path / "report"), data=str(tmp_path / "data"))
    report = tmp_path / "report" / "report.md"
    assert png_links(report) == set(summary["figures"]) == {p.name for p in (tmp_path / "report").glob("*.png")}
    for name in summary["figures"]:
        assert_png(tmp_path / "report" / name)
    assert "train " in report.read_text() and "### Sections" in report.read_text()
    assert summary["data"]["stats"]["records"] == 400 - summary["data"]["stats"]["records_without_labels"]
    with pytest.raises(ValueError, match="prepared dataset"):
        write_report(str(tmp_path / "other"), data=str(tmp_path / "data"), text_fields="title")


# ------------------------------------------------------------------------------ training runs
def test_run_names_add_the_parent_only_where_basenames_repeat(tmp_path):
    assert run_names(["/x/a/run", "/x/b/run", "/x/c/solo"]) == ["a/run", "b/run", "solo"]
    assert run_names(["/x/a/run", "/y/a/run"]) == ["/x/a/run", "/y/a/run"]


def test_curves_are_overlaid_one_line_per_run(two_runs, tmp_path):
    runs = [read_run(str(path), name) for path, name in zip(two_runs, run_names(two_runs))]
    figure = plot_metric_curves(runs, str(tmp_path / "curves.png"))
    visible = [axes for axes in figure.axes if axes.get_visible()]
    assert len(visible) == 4
    for axes in visible:
        assert [line.get_label() for line in axes.get_lines()] == ["lr1e-4/run", "lr3e-4/run"]
        assert list(axes.get_lines()[0].get_xdata()) == [10, 20, 30]  # the repeated step is one point
        assert axes.get_xlabel() == "training step" and "(%)" in axes.get_ylabel()
    for axes, scale in zip(visible, CURVE_SCALES.values()):
        assert list(axes.get_lines()[1].get_ydata()) == pytest.approx([15.0 * scale, 30.0 * scale, 35.0 * scale])
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["lr1e-4/run", "lr3e-4/run"]
    assert_png(tmp_path / "curves.png")


def test_run_report_links_every_png_and_has_the_final_metrics_table(two_runs, tmp_path):
    summary = write_report(str(tmp_path), runs=[str(path) for path in two_runs])
    report = tmp_path / "report.md"
    text = report.read_text()
    assert png_links(report) == {p.name for p in tmp_path.glob("*.png")} == set(summary["figures"])
    assert {"runs_eval_curves.png", "runs_level_precision.png"} <= set(summary["figures"])
    for name in summary["figures"]:
        assert_png(tmp_path / name)
    assert "| run | F1@1 | P@1 |" in text
    assert "| lr1e-4/run | 25.12 | 50.00 |" in text and "| lr3e-4/run | 35.67 | 50.00 |" in text
    assert "pass `--per-label`" in text


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory with a tiny saved (untrained) model, its tokenizer, label space and prepared data/."""
    from transformers import ModernBertConfig

    from modernpatent_hf import CpcLabelSpace, build_patent_classifier, train_patent_tokenizer, write_synthetic_corpus
    from modernpatent_hf.data.records import load_dataset_dir

    run_dir = write_run(tmp_path_factory.mktemp("saved") / "tiny", {5: 0.1}, final_f1=0.1)
    write_synthetic_corpus(str(run_dir / "data"), n=160, seed=2, num_subclasses=25, test_fraction=0.25)
    label_space = CpcLabelSpace.load(str(run_dir / "data"))
    tokenizer = train_patent_tokenizer(load_dataset_dir(str(run_dir / "data"))["train"]["text"], vocab_size=300)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    build_patent_classifier(config, label_space).save_pretrained(str(run_dir))
    tokenizer.save_pretrained(str(run_dir))
    label_space.save(str(run_dir / "label_space.json"))
    (run_dir / "run_config.json").write_text(json.dumps({"DataArguments": {"max_length": 48}}))
    return run_dir


def test_per_label_metrics_predict_the_runs_test_split(saved_run):
    from modernpatent_hf import CpcLabelSpace
    from modernpatent_hf.data.records import load_dataset_dir

    results = per_label_metrics(str(saved_run))
    test = load_dataset_dir(str(saved_run / "data"))["test"]
    label_space = CpcLabelSpace.load(str(saved_run))
    expected_support = Counter(code for labels in test["labels"] for code in labels if code in label_space)
    assert results["split"] == "test"
    assert results["metrics"]["test_num_patents"] == len(test)
    assert dict(zip(results["codes"], results["support"].tolist())) == {
        code: expected_support.get(code, 0) for code in label_space.codes
    }
    assert results["f1"].mean() == pytest.approx(results["metrics"]["test_macro_f1"])
    assert results["train_counts"].sum() == sum(label_space.counts.values())


def test_per_label_plot_is_made_for_runs_that_can_predict_and_skipped_with_a_note_for_others(
    saved_run, two_runs, tmp_path
):
    summary = write_report(str(tmp_path), runs=[str(saved_run), str(two_runs[0])], per_label=True)
    assert "runs_per_label_f1.png" in summary["figures"]
    assert_png(tmp_path / "runs_per_label_f1.png")
    assert (tmp_path / "per_label_tiny.tsv").read_text().startswith("code\ttitle\ttrain_count\tsupport")
    notes = [note for note in summary["notes"] if "per-label" in note]
    assert len(notes) == 1 and "of 'run' skipped" in notes[0] and "no config.json" in notes[0]
    assert png_links(tmp_path / "report.md") == set(summary["figures"])


# ------------------------------------------------------------------------------ command line
def test_cli_writes_a_data_and_runs_report(run_cli, tiny_jsonl, two_runs, tmp_path):
    out = tmp_path / "report"
    result = run_cli("report", "--data", tiny_jsonl, "--runs", *two_runs, "--out", out)
    assert "wrote" in result.stdout and "4 figures" in result.stdout
    text = (out / "report.md").read_text()
    assert "## Dataset" in text and "## Training runs" in text
    assert png_links(out / "report.md") == {p.name for p in out.glob("*.png")}
    assert not list(out.glob("*.tmp-*"))


@pytest.mark.parametrize(
    "kind, message", [("missing", "does not exist"), ("without_state", "has no trainer_state.json")]
)
def test_cli_bad_run_dirs_give_one_line_errors(capsys, tmp_path, kind, message):
    # In process: the same main() as the console script, without paying a torch import per subprocess.
    from modernpatent_hf.cli import main

    run_dir = tmp_path / kind
    if kind == "without_state":
        run_dir.mkdir()
        (run_dir / "all_results.json").write_text("{}")
    assert main(["report", "--runs", str(run_dir), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modernpatent report: error: ") and message in lines[0], lines
    assert str(run_dir) in lines[0]
    assert not (tmp_path / "out" / "report.md").exists()


def test_cli_without_data_or_runs_is_an_error(capsys, tmp_path):
    from modernpatent_hf.cli import main

    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "give --data" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real records
def test_report_of_the_real_records_matches_an_independent_count(shared_data, tmp_path):
    source = shared_data / "patents_us_gpatents_ai.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        label_lists = [json.loads(line)["cpc"] for line in handle if line.strip()]
    counts = Counter(code for labels in label_lists for code in labels)
    top30 = sum(n for _, n in counts.most_common(30)) / sum(counts.values())

    summary = write_report(str(tmp_path), data=str(source), titles=str(shared_data / "cpc_subclass_titles.tsv"))
    stats = summary["data"]["stats"]
    assert stats["records"] == len(label_lists)
    assert stats["subclasses"] == len(counts)
    assert stats["top30_share"] == pytest.approx(top30)
    assert -3.0 < summary["data"]["power_law_slope"] < -1.0  # a long tail: steeper than Zipf's -1
    text = (tmp_path / "report.md").read_text()
    assert "ELECTRIC DIGITAL DATA PROCESSING" in text  # G06F's title from the TSV
    for name in summary["figures"]:
        assert_png(tmp_path / name)
