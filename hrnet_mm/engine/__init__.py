"""Training-time helpers registered into mmengine."""
from .hooks import ProgressHook, WeightsDigestHook

__all__ = ['ProgressHook', 'WeightsDigestHook']
