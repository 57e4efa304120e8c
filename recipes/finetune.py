"""Shim: `accelerate launch recipes/finetune.py --config ...` runs modernpatent_hf/scripts/finetune.py (see its --help)."""

from modernpatent_hf.scripts.finetune import cli, main  # noqa: F401  (tests call main)

if __name__ == "__main__":
    cli()
