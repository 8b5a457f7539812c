"""The official HRNet stage tables, and validation of custom ones.

A stage table has the mmdet/mmseg/mmpose ``extra`` format: four entries ``stage1`` ...
``stage4``, each with ``num_modules``, ``num_branches``, ``block`` (``'BASIC'`` or
``'BOTTLENECK'``), ``num_blocks`` and ``num_channels`` (one entry per branch).

The tables here are immutable (mapping proxies of tuples), so no caller can change an
architecture for everyone else; :func:`get_arch` hands out a fresh, mutable deep copy.
"""
import copy
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

STAGE_NAMES = ('stage1', 'stage2', 'stage3', 'stage4')
STAGE_KEYS = ('num_modules', 'num_branches', 'block', 'num_blocks', 'num_channels')
#: Keys a stage may have too (those of the mmdet/mmseg/mmpose ``extra`` format).
OPTIONAL_STAGE_KEYS = ('fuse_method', 'multiscale_output')
BLOCK_TYPES = ('BASIC', 'BOTTLENECK')


def _stage(num_modules: int, block: str, num_blocks: tuple, num_channels: tuple) -> Mapping:
    return MappingProxyType(
        dict(num_modules=num_modules, num_branches=len(num_channels), block=block,
             num_blocks=tuple(num_blocks), num_channels=tuple(num_channels)))


def _standard(c: int) -> Mapping:
    """The table shared by W18 ... W64: widths C, 2C, 4C, 8C and 1/1/4/3 modules."""
    return MappingProxyType(
        dict(stage1=_stage(1, 'BOTTLENECK', (4, ), (64, )),
             stage2=_stage(1, 'BASIC', (4, ) * 2, (c, 2 * c)),
             stage3=_stage(4, 'BASIC', (4, ) * 3, (c, 2 * c, 4 * c)),
             stage4=_stage(3, 'BASIC', (4, ) * 4, (c, 2 * c, 4 * c, 8 * c))))


#: The official stage tables (HRNet-Image-Classification and the OpenMMLab model zoos).
ARCH_ZOO: Mapping[str, Mapping] = MappingProxyType({
    'w18_small_v1': MappingProxyType(
        dict(stage1=_stage(1, 'BOTTLENECK', (1, ), (32, )),
             stage2=_stage(1, 'BASIC', (2, 2), (16, 32)),
             stage3=_stage(1, 'BASIC', (2, 2, 2), (16, 32, 64)),
             stage4=_stage(1, 'BASIC', (2, 2, 2, 2), (16, 32, 64, 128)))),
    'w18_small_v2': MappingProxyType(
        dict(stage1=_stage(1, 'BOTTLENECK', (2, ), (64, )),
             stage2=_stage(1, 'BASIC', (2, 2), (18, 36)),
             stage3=_stage(3, 'BASIC', (2, 2, 2), (18, 36, 72)),
             stage4=_stage(2, 'BASIC', (2, 2, 2, 2), (18, 36, 72, 144)))),
    **{f'w{c}': _standard(c) for c in (18, 30, 32, 40, 44, 48, 64)},
})


def _thaw(table: Mapping) -> Dict[str, Any]:
    """A plain, mutable deep copy of a (possibly frozen) stage table."""
    return {name: {k: (list(v) if isinstance(v, (tuple, list)) else copy.deepcopy(v))
                   for k, v in stage.items()}
            for name, stage in table.items()}


def get_arch(arch: Optional[str] = None, extra: Optional[Mapping] = None) -> Dict[str, Any]:
    """Resolve ``arch`` or ``extra`` into a validated, independent stage table.

    Args:
        arch: A name from :data:`ARCH_ZOO`, e.g. ``'w32'``.
        extra: A full stage table; it overrides ``arch`` when given. It is deep-copied, never
            changed.

    Returns:
        A new dict ``{'stage1': {...}, ..., 'stage4': {...}}`` with list values.

    Raises:
        ValueError: An unknown ``arch``, or a table that is malformed (see
            :func:`validate_arch`).

    Example:
        >>> get_arch('w32')['stage4']['num_channels']
        [32, 64, 128, 256]
    """
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ValueError(f'extra must be a dict of stage1..stage4, got {type(extra).__name__}')
        table = extra
    elif arch is None:
        raise ValueError(f'give arch (one of {sorted(ARCH_ZOO)}) or extra (a stage table)')
    elif arch not in ARCH_ZOO:
        raise ValueError(f'arch={arch!r} is not known; allowed: {list(ARCH_ZOO)} '
                         '(or pass extra= with a custom stage table)')
    else:
        table = ARCH_ZOO[arch]
    validate_arch(table)
    return _thaw(table)


def is_int(value) -> bool:
    """An int, not a bool (``True`` is an int to Python, not a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return is_int(value) and value > 0


def check_positive_int(name: str, value) -> int:
    """``value`` if it is a positive int; else a ValueError naming the argument."""
    if not _positive_int(value):
        raise ValueError(f'{name}={value!r}: must be a positive int')
    return value


def check_positive_ints(name: str, values) -> Tuple[int, ...]:
    """``values`` as a tuple if it is a non-empty list of positive ints; else a ValueError
    naming the argument."""
    if not isinstance(values, (list, tuple)) or not values or not all(
            _positive_int(v) for v in values):
        raise ValueError(f'{name}={values!r}: must be a non-empty list of positive ints')
    return tuple(values)


def validate_arch(table: Mapping) -> None:
    """Check a stage table; raise a ValueError that names the field and what is allowed.

    Rules: the four stages ``stage1`` ... ``stage4`` are present; each has the keys of
    :data:`STAGE_KEYS` with positive integers; ``num_blocks`` and ``num_channels`` have
    ``num_branches`` entries; stage ``k`` has at most ``k`` branches (``stage1`` exactly one), no
    stage fewer than the one before; no other keys than those and :data:`OPTIONAL_STAGE_KEYS`;
    ``block`` is one of :data:`BLOCK_TYPES`; ``fuse_method``, when given, is
    ``'SUM'``.
    """
    missing = [s for s in STAGE_NAMES if s not in table]
    if missing:
        raise ValueError(f'extra: missing {missing}; a stage table needs {list(STAGE_NAMES)}')
    unknown = [s for s in table if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f'extra: unknown entries {unknown}; allowed: {list(STAGE_NAMES)}')
    prev_branches = 1
    for index, name in enumerate(STAGE_NAMES, start=1):
        stage = table[name]
        if not isinstance(stage, Mapping):
            raise ValueError(f'extra.{name} must be a dict with {list(STAGE_KEYS)}, got {stage!r}')
        absent = [k for k in STAGE_KEYS if k not in stage]
        if absent:
            raise ValueError(f'extra.{name}: missing {absent}; needed: {list(STAGE_KEYS)}')
        unknown = [k for k in stage if k not in STAGE_KEYS + OPTIONAL_STAGE_KEYS]
        if unknown:
            raise ValueError(f'extra.{name}: unknown keys {unknown}; allowed: '
                             f'{list(STAGE_KEYS + OPTIONAL_STAGE_KEYS)}')
        for key in ('num_modules', 'num_branches'):
            if not _positive_int(stage[key]):
                raise ValueError(f'extra.{name}.{key}={stage[key]!r}: must be a positive int')
        n = stage['num_branches']
        for key in ('num_blocks', 'num_channels'):
            value = stage[key]
            if not isinstance(value, (list, tuple)) or len(value) != n:
                raise ValueError(
                    f'extra.{name}.{key}={value!r}: needs num_branches={n} entries')
            if not all(_positive_int(v) for v in value):
                raise ValueError(f'extra.{name}.{key}={value!r}: entries must be positive ints')
        if stage['block'] not in BLOCK_TYPES:
            raise ValueError(
                f'extra.{name}.block={stage["block"]!r}: allowed: {list(BLOCK_TYPES)}')
        if stage.get('fuse_method', 'SUM') != 'SUM':
            raise ValueError(f'extra.{name}.fuse_method={stage["fuse_method"]!r}: '
                             "only 'SUM' is supported")
        if name == 'stage1' and n != 1:
            raise ValueError(f'extra.stage1.num_branches={n}: stage1 has exactly 1 branch')
        if n > index:
            raise ValueError(f'extra.{name}.num_branches={n}: {name} has at most {index} '
                             f'branches (strides 4 ... {4 * 2**(index - 1)}: one new branch a '
                             'stage)')
        if n < prev_branches:
            raise ValueError(f'extra.{name}.num_branches={n}: a stage cannot have fewer '
                             f'branches than the one before ({prev_branches})')
        prev_branches = n
