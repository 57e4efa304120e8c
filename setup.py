"""modernpatent-hf: CPC patent classification with ModernBERT on the Hugging Face stack."""

from setuptools import find_namespace_packages, setup

# Compatible ranges for library users. The exact versions that `make demo`, `make test` and CI install
# are in requirements.txt (`make lock` re-resolves it). torch is installed by the Makefile
# (`pip install torch==2.13.0`) before this package: a bare torch requirement on a machine without it
# pulls a multi-GB CUDA build. The range below is what the code needs and what 2.13.0 satisfies.
INSTALL_REQUIRES = [
    "torch>=2.4,<3",
    "transformers>=5.4,<6",
    "datasets>=4.0,<6",
    "accelerate>=1.2,<2",
    "evaluate>=0.4.3,<0.5",
    "huggingface-hub>=1.0,<3",
    "filelock>=4.3,<5",  # imported directly: the lock on every output (output_lock.py); its on_acquired hook
    "jinja2>=3.1",  # huggingface_hub.ModelCard.from_template renders the model card with it
    "peft>=0.15,<1",
    "tokenizers>=0.21,<1",
    "safetensors>=0.4",
    "pyarrow>=15",
    "numpy>=1.26",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "tensorboard>=2.15",
]

# What training and prediction do not need: reports, plots, experiments and the reference predictors
# (`reports`), ONNX export (`onnx`), DeepSpeed (`deepspeed`), the FAISS index of labelled patents (`evidence`). A
# command that needs one and does not find it says which extra to install (modernpatent_hf/errors.py). `dev` pulls
# them all, for the tests.
REPORTS = ["scikit-learn>=1.4,<2", "matplotlib>=3.8,<4"]
ONNX = ["onnx>=1.16", "onnxruntime>=1.18"]
DEEPSPEED = ["deepspeed>=0.16"]
EVIDENCE = ["faiss-cpu>=1.8"]
EXTRAS = {
    "reports": REPORTS,
    "onnx": ONNX,
    "deepspeed": DEEPSPEED,
    "evidence": EVIDENCE,
    "dev": ["pytest>=8", "hypothesis>=6.100", "psutil>=5.9", "ruff>=0.6", *REPORTS, *ONNX, *DEEPSPEED, *EVIDENCE],
}

setup(
    name="modernpatent-hf",
    version="0.1.0",
    description="CPC patent classification with ModernBERT: models, losses, metrics, data and recipes for the Hugging Face stack",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Namespace discovery: metrics_hub/f1_at_k is a folder of data (the evaluate module), not a package with __init__.
    packages=find_namespace_packages(include=["modernpatent_hf", "modernpatent_hf.*"], exclude=["*.__pycache__"]),
    # The evaluate module's files and the model card template (templates/modelcard_template.md).
    package_data={"modernpatent_hf": ["metrics_hub/*/*.py", "metrics_hub/*/*.md", "templates/*.md"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["modernpatent=modernpatent_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
