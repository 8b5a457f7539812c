"""Training-time helpers registered into mmengine."""
from .hooks import CUDAGraphsHook, WeightsDigestHook
from .quiet import ProgressBarHook

__all__ = ['CUDAGraphsHook', 'ProgressBarHook', 'WeightsDigestHook']
