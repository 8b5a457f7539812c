"""The stage tables: contents, immutability, and validation errors."""
import pytest

from hrnet_mm.models import ARCH_ZOO, get_arch

ARCHS = ['w18_small_v1', 'w18_small_v2', 'w18', 'w30', 'w32', 'w40', 'w44', 'w48', 'w64']


def test_zoo_has_every_official_arch():
    assert sorted(ARCH_ZOO) == sorted(ARCHS)


@pytest.mark.parametrize('width', [18, 30, 32, 40, 44, 48, 64])
def test_standard_widths_double_per_branch(width):
    table = get_arch(f'w{width}')
    assert table['stage4']['num_channels'] == [width, 2 * width, 4 * width, 8 * width]
    assert [table[f'stage{i}']['num_modules'] for i in range(1, 5)] == [1, 1, 4, 3]
    assert table['stage1'] == dict(num_modules=1, num_branches=1, block='BOTTLENECK',
                                   num_blocks=[4], num_channels=[64])


def test_small_tables_are_the_official_ones():
    v1, v2 = get_arch('w18_small_v1'), get_arch('w18_small_v2')
    assert v1['stage1']['num_channels'] == [32] and v1['stage1']['num_blocks'] == [1]
    assert [v1[f'stage{i}']['num_modules'] for i in range(1, 5)] == [1, 1, 1, 1]
    assert v1['stage4']['num_channels'] == [16, 32, 64, 128]
    assert [v2[f'stage{i}']['num_modules'] for i in range(1, 5)] == [1, 1, 3, 2]
    assert v2['stage4']['num_channels'] == [18, 36, 72, 144]
    assert v2['stage4']['num_blocks'] == [2, 2, 2, 2]


def test_zoo_is_immutable_and_copies_are_independent():
    with pytest.raises(TypeError):
        ARCH_ZOO['w32']['stage1'] = {}
    with pytest.raises(TypeError):
        ARCH_ZOO['w32']['stage2']['num_modules'] = 3
    table = get_arch('w32')
    table['stage2']['num_channels'][0] = 7
    assert get_arch('w32')['stage2']['num_channels'][0] == 32


def test_extra_is_copied_not_changed():
    extra = get_arch('w18')
    before = repr(extra)
    table = get_arch(extra=extra)
    table['stage3']['num_blocks'][0] = 99
    assert repr(extra) == before


def test_extra_overrides_arch():
    assert get_arch('w48', extra=get_arch('w18'))['stage2']['num_channels'] == [18, 36]


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(arch='w33'), r"arch='w33' is not known; allowed: \['w18_small_v1'"),
    (dict(arch=None), r'give arch'),
    (dict(extra=[1, 2]), r'extra must be a dict'),
])
def test_bad_arch(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_arch(**kwargs)


def _table_with(stage, **changes):
    table = get_arch('w18')
    table[stage].update(changes)
    return table


@pytest.mark.parametrize('table, pattern', [
    (_table_with('stage3', num_blocks=[4, 4]),
     r'extra.stage3.num_blocks=\[4, 4\]: needs num_branches=3 entries'),
    (_table_with('stage4', num_channels=[18, 36, 72]),
     r'extra.stage4.num_channels=\[18, 36, 72\]: needs num_branches=4 entries'),
    (_table_with('stage2', block='DENSE'),
     r"extra.stage2.block='DENSE': allowed: \['BASIC', 'BOTTLENECK'\]"),
    (_table_with('stage2', num_modules=0), r'extra.stage2.num_modules=0: must be a positive int'),
    (_table_with('stage1', num_branches=2, num_blocks=[4, 4], num_channels=[64, 64]),
     r'extra.stage1.num_branches=2: stage1 has exactly 1 branch'),
    (_table_with('stage4', num_branches=2, num_blocks=[4, 4], num_channels=[18, 36]),
     r'extra.stage4.num_branches=2: a stage cannot have fewer branches'),
    (_table_with('stage3', fuse_method='CAT'), r"fuse_method='CAT': only 'SUM'"),
    ({k: v for k, v in get_arch('w18').items() if k != 'stage4'},
     r"extra: missing \['stage4'\]"),
    ({**get_arch('w18'), 'stage5': {}}, r"extra: unknown entries \['stage5'\]"),
    (_table_with('stage2', num_channels=[18, -1]), r'entries must be positive ints'),
])
def test_bad_table(table, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_arch(extra=table)
