"""A saved checkpoint loads with trust_remote_code=True in a process that cannot import modernpatent_hf."""

import ast
import json
import shutil
import sys

import torch

from modernpatent_hf import ModernBertForHierarchicalPatentClassification, ModernBertPatentConfig

from testing_utils import run_isolated_script

REMOTE_FILES = ("configuration_modernpatent.py", "modeling_modernpatent.py", "losses.py")
CODES = ["A01B", "A01C", "B65D", "H01L", "H04W"]

# Runs in the clean process: refuses the package (whatever way it is installed), proves it, then loads through the
# three auto classes and writes the logits.
LOADER_BODY = (  # run after the script_without_package preamble
    """
    try:
        import modernpatent_hf
    except ModuleNotFoundError:
        package_importable = False
    else:
        package_importable = True

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    torch.set_num_threads(1)  # as the parent computes its reference: identical reduction order, identical logits

    checkpoint, inputs = sys.argv[1], json.load(open(sys.argv[2]))
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
    result = {"package_importable": package_importable, "config_class": type(config).__name__}
    tensors = {name: torch.tensor(values) for name, values in inputs.items()}
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    with torch.no_grad():
        output = model(**tensors)
        result["hidden_states"] = encoder(**tensors).last_hidden_state.tolist()
    result["logits"] = output.logits.tolist()
    result["class_logits"] = output.class_logits.tolist()
    result["model_module"] = type(model).__module__
    result["encoder_class"] = type(encoder).__name__
    result["encoder_module"] = type(encoder).__module__
    result["loaded_package_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "modernpatent_hf")
    json.dump(result, open(sys.argv[3], "w"))
    """
)


def saved_checkpoint(directory):
    torch.manual_seed(0)
    config = ModernBertPatentConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        local_attention=8,
        id2label=dict(enumerate(CODES)),
        label2id={code: i for i, code in enumerate(CODES)},
    )
    model = ModernBertForHierarchicalPatentClassification(config).eval()
    model.save_pretrained(directory)
    return model


def test_save_pretrained_writes_auto_map_and_copies_the_modeling_files(tmp_path):
    saved_checkpoint(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_modernpatent.ModernBertPatentConfig",
        "AutoModel": "modeling_modernpatent.ModernBertPatentModel",
        "AutoModelForSequenceClassification": "modeling_modernpatent.ModernBertForHierarchicalPatentClassification",
    }
    assert all((tmp_path / name).is_file() for name in REMOTE_FILES)


def test_copied_files_import_only_stdlib_torch_transformers_and_each_other(tmp_path):
    saved_checkpoint(tmp_path)
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers"}
    siblings = {name.removesuffix(".py") for name in REMOTE_FILES}
    for name in REMOTE_FILES:
        tree = ast.parse((tmp_path / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name.split(".")[0] for alias in node.names]
                assert set(modules) <= allowed, f"{name} imports {modules}"
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.module in siblings, f"{name} imports .{node.module}"
                else:
                    assert node.module.split(".")[0] in allowed, f"{name} imports {node.module}"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{name} does file I/O"


def test_checkpoint_loads_with_trust_remote_code_without_the_package(tmp_path, script_without_package):
    model = saved_checkpoint(tmp_path / "saved")
    checkpoint = tmp_path / "copied-checkpoint"
    shutil.copytree(tmp_path / "saved", checkpoint)
    input_ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    (tmp_path / "inputs.json").write_text(
        json.dumps({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()})
    )
    (tmp_path / "loader.py").write_text(script_without_package(LOADER_BODY))
    completed = run_isolated_script(
        tmp_path / "loader.py", checkpoint, tmp_path / "inputs.json", tmp_path / "result.json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["package_importable"] is False
    assert result["loaded_package_modules"] == []
    assert result["model_module"].startswith("transformers_modules.")
    assert result["config_class"] == "ModernBertPatentConfig"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            expected = model(input_ids=input_ids, attention_mask=attention_mask)
            expected_hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.tensor(result["logits"]), expected.logits)
    assert torch.equal(torch.tensor(result["class_logits"]), expected.class_logits)
    assert result["encoder_class"] == "ModernBertPatentModel" and result["encoder_module"].startswith(
        "transformers_modules."
    )
    assert torch.equal(torch.tensor(result["hidden_states"]), expected_hidden)
