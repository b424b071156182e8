"""beir_peft: parameter-efficient and domain-adapted dense retrievers for BEIR."""

__version__ = "0.1.0"
