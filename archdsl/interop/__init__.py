"""Interoperability with other model libraries. :mod:`archdsl.interop.hf`: Hugging Face transformers
configs to spec text, their weights into built models, and built models back out as HF checkpoints.

Importing this package imports neither torch nor transformers."""
