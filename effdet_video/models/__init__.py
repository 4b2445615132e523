"""EfficientDet in PyTorch, numerically matching Google AutoML's TF2 Keras model, and its `.h5` weights."""
from .build import build_model, init_random_weights
from .checkpoints import resolve_weights
from .efficientdet import EfficientDet
from .weights import load_automl_h5, save_automl_h5

__all__ = ["EfficientDet", "build_model", "init_random_weights", "load_automl_h5", "resolve_weights",
           "save_automl_h5"]
