"""The training entry points, shipped with the package (as trl/scripts/ does), so an installed package runs them:

    accelerate launch -m modernpatent_hf.scripts.finetune --config recipes/demo/finetune.yaml
    accelerate launch -m modernpatent_hf.scripts.pretrain_mlm --config recipes/demo/pretrain.yaml

``recipes/finetune.py`` and ``recipes/pretrain_mlm.py`` are two-line shims over them, so the documented
``accelerate launch recipes/finetune.py`` keeps working in a clone.
"""
