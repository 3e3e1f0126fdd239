from setuptools import find_packages, setup


setup(
    name="mla_hf",
    version="0.1.0",
    description="MLA (Multimodal Learning with Alternating Unimodal Adaptation) for Hugging Face transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # The model card template lives in model_cards/ and is installed as package data of mla_hf.model_cards.
    package_dir={"": "src", "mla_hf.model_cards": "model_cards"},
    packages=[*find_packages("src"), "mla_hf.model_cards"],
    package_data={"mla_hf.model_cards": ["*.md"], "mla_hf.metrics": ["*/*.py"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "accelerate>=1.0",
        "datasets>=4.0",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "numpy>=1.26",
        "scikit-learn>=1.3",
        "pillow>=10.0",
        "scipy>=1.10",
        "tokenizers>=0.21",
        "evaluate>=0.4",
        "matplotlib>=3.7",
        "espeakng-loader>=0.2",  # eSpeak NG (GPL-3.0-or-later) for AV-Digits' speech, called at run time
    ],
    extras_require={
        "peft": ["peft>=0.17"],
        "test": ["pytest>=8", "hypothesis>=6.100", "peft>=0.17", "optuna>=4"],
        "dev": ["pytest>=8", "hypothesis>=6.100", "peft>=0.17", "optuna>=4", "ruff"],
    },
)
