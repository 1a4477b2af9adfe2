"""Model kinds, the model registry, presets, and the tokenizers saved with text models."""
