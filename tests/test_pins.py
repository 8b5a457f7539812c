"""tools/pins.py: whether tools/install.sh has anything left to install.

Each test builds a small environment of its own (``*.dist-info`` folders with their
``METADATA``) and checks it with ``path=`` set to it, so the answer does not depend on what
this test environment has.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tool_module

ROOT = Path(__file__).resolve().parents[1]
pins = tool_module('pins')


def _dist(site, name, version, requires=(), direct_url=None):
    info = site / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir(parents=True)
    lines = ['Metadata-Version: 2.1', f'Name: {name}', f'Version: {version}']
    lines += [f'Requires-Dist: {r}' for r in requires]
    (info / 'METADATA').write_text('\n'.join(lines) + '\n')
    if direct_url is not None:
        (info / 'direct_url.json').write_text(json.dumps(direct_url))


@pytest.fixture
def site(tmp_path):
    """An environment: app 1.0 needs lib >= 1 and Jinja2, and with its extra 'gpu' also cuda-rt;
    py2-only is needed on Python 2 only."""
    site = tmp_path / 'site'
    _dist(site, 'app', '1.0', ['lib>=1', 'Jinja2', 'cuda-rt; extra == "gpu"',
                               'py2-only; python_version < "3"'])
    _dist(site, 'lib', '1.2', ['base'])
    _dist(site, 'jinja2', '3.1.6', ['MarkupSafe>=2'])
    _dist(site, 'markupsafe', '3.0.4')
    _dist(site, 'base', '0.1')
    return site


def _files(tmp_path, constraints, requirements=None):
    c = tmp_path / 'constraints.txt'
    c.write_text(constraints)
    if requirements is None:
        return str(c)
    r = tmp_path / 'requirements.txt'
    r.write_text(requirements)
    return str(c), str(r)


def _check(site, constraints, items, **kw):
    return pins.check(constraints, items, path=[str(site)], **kw)


def test_everything_installed_as_pinned_counts_each_package_and_its_needs(tmp_path, site):
    constraints, requirements = _files(
        tmp_path, '# pins\nlib==1.2\nJinja2==3.1.6\nMarkupSafe==3.0.4\n',
        '# what we need\napp  # the application\n-c other.txt\n\n')
    # app, lib, base, jinja2, markupsafe; the extra's and Python 2's needs do not apply
    assert _check(site, constraints, [requirements]) == 5


def test_a_package_off_its_pin_is_named_with_both_versions(tmp_path, site):
    constraints = _files(tmp_path, 'lib==1.1\n')
    with pytest.raises(pins.Unmet, match=r'^lib 1\.2 is installed, lib==1\.1 is required '
                                         r'\(constraints\.txt\)$'):
        _check(site, constraints, ['app'])


def test_a_requirement_not_met_names_who_needs_it(tmp_path, site):
    constraints = _files(tmp_path, '')
    with pytest.raises(pins.Unmet, match=r'^lib 1\.2 is installed, lib>=2 is required$'):
        _check(site, constraints, ['lib>=2'])
    _dist(site, 'needy', '2.0', ['absent-thing>=1'])
    with pytest.raises(pins.Unmet, match=r'^absent-thing is not installed '
                                         r'\(needed by needy 2\.0\)$'):
        _check(site, constraints, ['needy'])


def test_needs_are_followed_all_the_way_down(tmp_path, site):
    (next(site.glob('markupsafe-*')) / 'METADATA').unlink()  # a broken install: no metadata
    with pytest.raises(pins.Unmet, match=r'^MarkupSafe is not installed '
                                         r'\(needed by Jinja2 3\.1\.6\)$'):
        _check(site, _files(tmp_path, ''), ['app'])


def test_an_extra_brings_its_own_needs(tmp_path, site):
    constraints = _files(tmp_path, '')
    assert _check(site, constraints, ['app']) == 5
    with pytest.raises(pins.Unmet, match=r'^cuda-rt is not installed \(needed by app 1\.0\)$'):
        _check(site, constraints, ['app[gpu]'])


def test_no_deps_items_are_checked_without_what_they_declare(tmp_path, site):
    _dist(site, 'mmpose', '1.3.2', ['chumpy', 'lib'])  # chumpy does not install
    constraints = _files(tmp_path, 'mmpose==1.3.2\n')
    assert _check(site, constraints, [], no_deps=['mmpose==1.3.2']) == 1
    with pytest.raises(pins.Unmet, match=r'^chumpy is not installed'):
        _check(site, constraints, ['mmpose'])
    with pytest.raises(pins.Unmet, match=r'^mmpose 1\.3\.2 is installed, mmpose==1\.3\.1'):
        _check(site, constraints, [], no_deps=['mmpose==1.3.1'])


def test_a_pin_that_does_not_apply_here_is_not_checked(tmp_path, site):
    constraints = _files(tmp_path, 'lib==9.9; sys_platform == "nowhere"\n')
    assert _check(site, constraints, ['lib']) == 2


def test_editable_from_this_folder_at_its_version(tmp_path, site):
    repo = tmp_path / 'repo'
    (repo / 'mypkg').mkdir(parents=True)
    (repo / 'mypkg/version.py').write_text("__version__ = '0.2.0'\n")
    _dist(site, 'mypkg', '0.2.0', direct_url={'url': repo.as_uri(),
                                              'dir_info': {'editable': True}})
    constraints = _files(tmp_path, '')
    assert _check(site, constraints, [], editable=[('mypkg', str(repo))]) == 1
    other = tmp_path / 'other'
    (other / 'mypkg').mkdir(parents=True)
    (other / 'mypkg/version.py').write_text("__version__ = '0.2.0'\n")
    with pytest.raises(pins.Unmet, match=rf'^mypkg is installed from {repo.as_uri()}, not '
                                         rf'editable from {other.as_uri()}$'):
        _check(site, constraints, [], editable=[('mypkg', str(other))])
    (repo / 'mypkg/version.py').write_text("__version__ = '0.3.0'\n")  # pulled a new version
    with pytest.raises(pins.Unmet, match=r'^mypkg 0\.2\.0 is installed, .* is 0\.3\.0$'):
        _check(site, constraints, [], editable=[('mypkg', str(repo))])


def test_an_unreadable_requirement_is_one_line(tmp_path, site):
    constraints, requirements = _files(tmp_path, '', 'app\nnot a requirement!\n')
    with pytest.raises(pins.Unmet, match=r"^requirements\.txt: cannot read the requirement "
                                         r"'not a requirement!'"):
        _check(site, constraints, [requirements])


def test_command_line_prints_one_line_and_exit_status(tmp_path):
    """On this test environment: what install.sh checks is all installed (the tests run in it)."""
    req = ROOT / 'requirements'
    ok = subprocess.run([sys.executable, str(ROOT / 'tools/pins.py'), str(req / 'constraints.txt'),
                         str(req / 'runtime.txt'), '--no-deps', 'mmpose',
                         '--editable', f'hrnet_mm={ROOT}'],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stderr == '', ok.stdout + ok.stderr
    assert ok.stdout.endswith(' packages installed as pinned\n')
    assert int(ok.stdout.split()[0]) > 20
    bad = subprocess.run([sys.executable, str(ROOT / 'tools/pins.py'),
                          str(req / 'constraints.txt'), 'torch==0.1'],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f'torch {bad.stdout.split()[1]} is installed, torch==0.1 is required']
