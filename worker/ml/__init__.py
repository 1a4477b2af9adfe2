"""Keras 3 model code, backend-neutral; submodules import keras, so import them lazily."""
