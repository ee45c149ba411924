"""selfalign: principle-driven self-alignment data, from a short principle set to SFT JSONL."""

__version__ = "0.1.0"
