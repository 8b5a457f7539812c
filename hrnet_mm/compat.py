"""Narrow fixes for the pinned OpenMMLab stack meeting newer packages already in an environment.

Example:
    >>> from hrnet_mm.compat import skip_mmpretrain_multimodal
    >>> skip_mmpretrain_multimodal()  # doctest: +SKIP  (True where transformers >= 5)
"""
from __future__ import annotations

import sys
from importlib import metadata


def _major(package: str) -> int | None:
    """The major version of an installed distribution, or None where it is not installed."""
    try:
        return int(metadata.version(package).split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def skip_mmpretrain_multimodal() -> bool:
    """Leave out mmpretrain 1.x's multimodal models where transformers >= 5 is installed.

    mmpretrain 1.2.0 imports its BLIP / BLIP-2 / LLaVA models whenever transformers >= 4.28
    is installed, and they subclass names that transformers 5 no longer has
    (``transformers.modeling_utils.find_pruneable_heads_and_indices`` and others): the import
    ends in ``TypeError: NoneType takes no arguments``, and with it every import of
    ``mmpretrain.models``, ``mmdet.models`` (its ReID preprocessor imports mmpretrain) and
    ``mmseg.models`` (which imports mmdet's). Images with a recent transformers (the GPU
    machines this project is measured on have 5.17) cannot build any detector or segmentor.

    This marks mmpretrain's multimodal extra as unavailable, exactly as mmpretrain itself does
    where transformers is missing: those models are registered as placeholders that say what
    to install, and nothing else changes. It must run before ``mmpretrain.models`` is
    imported, which importing ``hrnet_mm`` does (configs import it through
    ``custom_imports``).

    Returns:
        bool: True where the multimodal models were left out.
    """
    if (_major('transformers') or 0) < 5 or (_major('mmpretrain') or 2) >= 2:
        return False
    if 'mmpretrain.models' in sys.modules:
        return False  # too late to change
    try:
        from mmpretrain.utils import dependency
    except Exception:  # noqa: BLE001  a broken mmpretrain: registration warns about it later
        return False
    dependency.WITH_MULTIMODAL = False
    return True
