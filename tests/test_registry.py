"""Registration: the hrnet_mm scope, every installed library, and missing/broken libraries."""
import subprocess
import sys
import textwrap

import pytest

import hrnet_mm
from hrnet_mm import HRNetV2
from hrnet_mm.registry import register_into_libraries


def _run(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (registration happens at import time)."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_registered_into_every_installed_library():
    assert hrnet_mm.REGISTERED_LIBRARIES == ('mmdet', 'mmseg', 'mmpose', 'mmpretrain')


@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpose'])
def test_build_from_library_registry(library):
    import importlib
    registry = importlib.import_module(f'{library}.registry').MODELS
    model = registry.build(dict(type='HRNetV2', arch='w18_small_v1', representation='v1'))
    assert type(model) is HRNetV2  # the one implementation, not a copy
    assert model.out_channels == (16, )


def test_build_from_hrnet_mm_scope():
    from mmengine.registry import MODELS as ROOT
    from mmdet.registry import MODELS as MMDET
    assert hrnet_mm.MODELS.scope == 'hrnet_mm'
    assert type(hrnet_mm.MODELS.build(dict(type='HRNetV2', arch='w18_small_v1'))) is HRNetV2
    # scoped names work from other registries through the common root
    for registry in (ROOT, MMDET):
        model = registry.build(dict(type='hrnet_mm.HRNetV2', arch='w18_small_v1'))
        assert type(model) is HRNetV2


def test_custom_imports_in_a_config(tmp_path):
    """What users write in an mmdet config, in a fresh interpreter that never imported it."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
        model = dict(type='HRNetV2', arch='w18_small_v1',
                     representation=dict(type='v2p', out_channels=64, num_outs=3))
    """))
    proc = _run(f"""
        from mmengine.config import Config
        cfg = Config.fromfile({str(cfg)!r})
        from mmdet.registry import MODELS
        m = MODELS.build(cfg.model)
        print(type(m).__module__, m.out_channels)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['hrnet_mm.models.hrnet', '(64,', '64,', '64)']


def test_missing_library_is_skipped_without_error():
    proc = _run("""
        import sys, warnings
        sys.modules['mmpose'] = None      # as if mmpose were not installed
        sys.modules['mmseg'] = None
        sys.modules['mmpretrain'] = None
        warnings.simplefilter('error')    # and nothing is even warned about
        import hrnet_mm
        print(hrnet_mm.REGISTERED_LIBRARIES)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('mmdet',)"


def test_broken_library_is_skipped_with_a_warning(tmp_path):
    pkg = tmp_path / 'brokenlib'
    pkg.mkdir()
    (pkg / '__init__.py').write_text("raise AssertionError('needs mmcv<2.0')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.warns(UserWarning, match=r'brokenlib is installed but does not import '
                          r'\(AssertionError: needs mmcv<2.0\)'):
            done = register_into_libraries({'HRNetV2': HRNetV2}, ['brokenlib', 'mmdet'])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop('brokenlib', None)
    assert done == ['mmdet']


def test_library_missing_a_dependency_warns_rather_than_hides(tmp_path):
    pkg = tmp_path / 'halflib'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'registry.py').write_text('import a_dependency_that_is_not_there\n')
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.warns(UserWarning, match=r"halflib is installed but does not import"):
            assert register_into_libraries({'HRNetV2': HRNetV2}, ['halflib']) == []
    finally:
        sys.path.remove(str(tmp_path))
        for name in ('halflib', 'halflib.registry'):
            sys.modules.pop(name, None)


def _fake_transformers(root, version: str) -> None:
    """An installed ``transformers`` of ``version`` without the names mmpretrain 1.2.0's
    multimodal models import (transformers 5 removed some of them)."""
    (root / 'transformers').mkdir()
    (root / 'transformers' / '__init__.py').write_text('')
    dist = root / f'transformers-{version}.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text(
        f'Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n')


def test_detectors_and_segmentors_build_where_transformers_5_is_installed(tmp_path):
    """With transformers >= 5 in the environment (as on the GPU machines, 5.17), importing
    mmdet.models or mmseg.models ended in ``TypeError: NoneType takes no arguments`` inside
    mmpretrain 1.2.0's BLIP; importing hrnet_mm first leaves those models out, as mmpretrain
    does without transformers, and everything else builds."""
    _fake_transformers(tmp_path, '5.17.0')
    proc = _run(f'''
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import hrnet_mm
        import mmdet.models, mmseg.models, mmpose.models, mmpretrain.models
        from mmpretrain.utils import dependency
        from mmdet.registry import MODELS
        MODELS.build(dict(type='HRNetV2', arch='w18_small_v1'))
        print('multimodal', dependency.WITH_MULTIMODAL)
        ''')
    assert proc.returncode == 0 and proc.stdout.strip() == 'multimodal False', proc.stderr[-2000:]


def test_transformers_4_keeps_mmpretrains_multimodal_models(monkeypatch):
    from hrnet_mm import compat
    versions = {'transformers': 4, 'mmpretrain': 1}
    monkeypatch.setattr(compat, '_major', versions.get)
    assert compat.skip_mmpretrain_multimodal() is False
    versions['transformers'] = None  # not installed
    assert compat.skip_mmpretrain_multimodal() is False


def test_a_broken_mmpretrain_does_not_break_importing_hrnet_mm(monkeypatch):
    """transformers >= 5 beside an mmpretrain that does not import (e.g. with
    importlib_metadata >= 8.8): the fix is skipped, and registration warns about mmpretrain."""
    from hrnet_mm import compat
    monkeypatch.setattr(compat, '_major', {'transformers': 5, 'mmpretrain': 1}.get)
    monkeypatch.delitem(sys.modules, 'mmpretrain.models', raising=False)
    monkeypatch.setitem(sys.modules, 'mmpretrain.utils', None)  # its import raises ImportError
    assert compat.skip_mmpretrain_multimodal() is False
