"""hrnet_mm: HRNet (Wang et al., TPAMI 2020) as one OpenMMLab plugin for mmdet, mmseg and mmpose."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    ns: dict = {}
    with open(osp.join(osp.dirname(__file__), 'hrnet_mm', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


setup(
    name='hrnet_mm',
    version=read_version(),
    description='HRNetV2 backbone (V1, V2, V2+p representations) for mmdet, mmseg and mmpose',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['hrnet_mm', 'hrnet_mm.*']),
    # the Winograd CPU kernel's source, compiled on first use (hrnet_mm/winograd.py)
    package_data={'hrnet_mm': ['csrc/*.cpp']},
    python_requires='>=3.9',
    # The pinned stack, mmcv with compiled ops included, is installed by tools/install.sh.
    install_requires=['torch', 'mmengine>=0.10', 'mmcv>=2.0.0,<2.2.0'],
    extras_require={'tests': ['pytest', 'pytest-timeout', 'timm']},
    license='Apache-2.0',
    zip_safe=False,
)
