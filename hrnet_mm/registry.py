"""The ``hrnet_mm`` registry scope, and registration into the OpenMMLab libraries installed.

``MODELS`` here is a child of mmengine's root registry under the ``hrnet_mm`` scope, so
``MODELS.build(dict(type='hrnet_mm.HRNetV2', ...))`` works from any scope. The same classes
are also registered into the MODELS registry of each of mmdet, mmseg, mmpose and mmpretrain
that is installed, so ``type='HRNetV2'`` works in their configs. One class, many registries.
"""
import importlib
import warnings
from typing import Any, Iterable, List, Mapping

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='hrnet_mm',
                  locations=['hrnet_mm.models'])

#: The libraries whose ``<library>.registry.MODELS`` receive hrnet_mm's models.
LIBRARIES = ('mmdet', 'mmseg', 'mmpose', 'mmpretrain')


def build_in_library(model_cfg: Mapping, library: str) -> Any:
    """Build ``model_cfg`` with ``library``'s MODELS registry in that library's default scope,
    as the library's own runner does (its heads, losses and data preprocessors are found by
    scope; the scope before is restored).

    Example:
        >>> detector = build_in_library(Config.fromfile(path).model, 'mmdet')
    """
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{library}.registry').MODELS
    with DefaultScope.overwrite_default_scope(library):
        return registry.build(model_cfg)


def register_into_libraries(modules: dict, libraries: Iterable[str] = LIBRARIES) -> List[str]:
    """Register ``{name: class}`` into each installed library's MODELS registry.

    A library that is not installed is skipped silently; one that is installed but fails to
    import (e.g. an mmcv version it refuses) is skipped with a warning saying why.

    Returns:
        The libraries registered into.
    """
    done = []
    for lib in libraries:
        try:
            registry = importlib.import_module(f'{lib}.registry').MODELS
        except ModuleNotFoundError as e:
            if e.name is not None and (e.name == lib or e.name.startswith(f'{lib}.')):
                continue  # not installed
            warnings.warn(f'hrnet_mm: {lib} is installed but does not import ({e}); '
                          f"hrnet_mm's models are not registered into {lib}")
            continue
        except Exception as e:  # noqa: BLE001 - a broken install must not break hrnet_mm
            warnings.warn(f'hrnet_mm: {lib} is installed but does not import '
                          f'({type(e).__name__}: {e}); hrnet_mm\'s models are not registered '
                          f'into {lib}')
            continue
        for name, cls in modules.items():
            # force=True: re-importing (e.g. a reload in a notebook) replaces, never fails.
            registry.register_module(name=name, module=cls, force=True)
        done.append(lib)
    return done
