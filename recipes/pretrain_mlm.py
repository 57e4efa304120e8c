"""Shim: `accelerate launch recipes/pretrain_mlm.py --config ...` runs modernpatent_hf/scripts/pretrain_mlm.py (see its --help)."""

from modernpatent_hf.scripts.pretrain_mlm import cli, main  # noqa: F401  (tests call main)

if __name__ == "__main__":
    cli()
