"""A light core: `import modernpatent_hf` and `modernpatent --help` load no torch, transformers or datasets, the public
names load on first use, and our model types still join transformers' Auto classes, whichever is imported first.
Each case runs in a fresh interpreter: what a process has imported is the thing under test."""

import json
import subprocess
import sys
import textwrap

import pytest

from testing_utils import SINGLE_THREAD, save_tiny_checkpoint, write_older_format

HEAVY = ("torch", "transformers", "datasets")


def run_python(body, *arguments, refuse=()):
    """Run ``body`` in a new interpreter where importing the top-level modules ``refuse`` fails as if they were not
    installed; its last stdout line is JSON, returned parsed."""
    preamble = textwrap.dedent(f"""
        import sys

        class Refuse:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.split(".")[0] in {tuple(refuse)!r}:
                    # As when it is not installed: importlib.util.find_spec (libraries probing what they can use)
                    # finds nothing, an import statement fails.
                    if any(frame.f_code.co_name == "find_spec" and frame.f_globals.get("__name__") == "importlib.util"
                           for frame in (sys._getframe(1), sys._getframe(2), sys._getframe(3))):
                        return None
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, Refuse)
    """)
    result = subprocess.run(
        [sys.executable, "-c", preamble + textwrap.dedent(body), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=SINGLE_THREAD,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved classifier (a stock ModernBERT classifier's config.json, with our fields and auto_map)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("lazy") / "checkpoint")


@pytest.fixture(scope="module")
def older_checkpoint(checkpoint, tmp_path_factory):
    """The same classifier as the package saved it before the stock format: model_type "modernpatent"."""
    return write_older_format(checkpoint, tmp_path_factory.mktemp("lazy") / "older")


def test_importing_the_package_and_asking_for_help_load_no_heavy_library():
    loaded = run_python(f"""
        import json, sys
        import modernpatent_hf
        after_import = [name for name in {HEAVY!r} if name in sys.modules]
        from modernpatent_hf.cli import build_parser
        build_parser().format_help()
        after_help = [name for name in {HEAVY!r} if name in sys.modules]
        print(json.dumps([after_import, after_help, modernpatent_hf.__version__, "CpcLabelSpace" in dir(modernpatent_hf)]))
    """)
    assert loaded == [[], [], "0.1.0", True]
    result = subprocess.run(
        [sys.executable, "-m", "modernpatent_hf.cli", "--help"],
        capture_output=True,
        text=True,
        env=SINGLE_THREAD,
        timeout=120,
    )
    assert result.returncode == 0 and "prepare" in result.stdout


def test_a_public_name_loads_its_module_on_first_use_and_an_unknown_one_is_an_attribute_error():
    loaded = run_python("""
        import json, sys
        import modernpatent_hf
        space = modernpatent_hf.CpcLabelSpace.from_label_lists([["A01B", "H01L"]])
        cpc_only = "torch" not in sys.modules
        try:
            modernpatent_hf.NotAName
            missing = "no error"
        except AttributeError as error:
            missing = str(error)
        print(json.dumps([space.codes, cpc_only, missing]))
    """)
    assert loaded == [["A01B", "H01L"], True, "module 'modernpatent_hf' has no attribute 'NotAName'"]


@pytest.mark.parametrize(
    "first",
    [
        "import modernpatent_hf",
        "from modernpatent_hf import ModernBertPatentConfig",  # our config module starts the import of transformers' Auto modules
        "from modernpatent_hf.configs import DataArguments",  # a transformers config class does (its docstring decorator)
        "from transformers import AutoModelForSequenceClassification; import modernpatent_hf",  # transformers first
    ],
)
def test_the_auto_classes_resolve_our_checkpoints_without_remote_code(checkpoint, older_checkpoint, first):
    """Once imported, the package's registrations resolve an older checkpoint's model type and our config classes
    to our classes, whatever was imported first; a checkpoint of today's format stays a stock checkpoint to the
    plain Auto classes (transformers keeps a native model type on its native classes)."""
    loaded = run_python(
        f"""
        import json, sys
        {first}
        import modernpatent_hf
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
        older, today = sys.argv[1], sys.argv[2]
        config = AutoConfig.from_pretrained(older)
        classifier = AutoModelForSequenceClassification.from_pretrained(older)
        encoder = AutoModel.from_config(config)
        stock = AutoModelForSequenceClassification.from_pretrained(today)
        print(json.dumps([type(config).__name__, type(classifier).__name__, type(encoder).__name__,
                          type(AutoConfig.from_pretrained(today)).__name__, type(stock).__name__]))
    """,
        older_checkpoint,
        checkpoint,
    )
    assert loaded == [
        "ModernBertPatentConfig",
        "ModernBertForHierarchicalPatentClassification",
        "ModernBertPatentModel",
        "ModernBertConfig",
        "ModernBertForSequenceClassification",
    ]


def test_prediction_needs_no_datasets(checkpoint):
    """The GPU machines we benchmark on have torch and transformers but not datasets; prediction does not load the
    recipes' training arguments either."""
    loaded = run_python(
        """
        import json, sys
        from modernpatent_hf import PatentClassifier
        classifier = PatentClassifier.from_pretrained(sys.argv[1], device="cpu")
        predictions = classifier.predict(["A plough with a frame and tines."], top_k=2)
        print(json.dumps([len(predictions[0]), "datasets" in sys.modules, "modernpatent_hf.configs" in sys.modules]))
    """,
        checkpoint,
        refuse=("datasets",),
    )
    assert loaded == [2, False, False]  # nor the training configuration


def test_training_needs_no_reports_extra_and_a_command_that_does_names_it():
    """scikit-learn and matplotlib (the `reports` extra) serve reports, plots, experiments and the baselines only."""
    loaded = run_python(
        """
        import contextlib, io, json
        import modernpatent_hf.scripts.finetune, modernpatent_hf.scripts.pretrain_mlm, modernpatent_hf.predictor
        from modernpatent_hf.cli import main
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = main(["experiments", "summarize", "no-such-grid"])
        print(json.dumps([status, stderr.getvalue().strip().splitlines()]))
    """,
        refuse=("sklearn", "matplotlib"),
    )
    assert loaded == [
        2,
        [
            "modernpatent experiments: error: this needs matplotlib, an optional dependency: "
            "pip install 'modernpatent-hf[reports]'"
        ],
    ]
