"""The model registry and the tokenizers saved with text models."""
