#!/usr/bin/env python
# Copyright (c) mmsnip contributors. All rights reserved.
"""Packaging for mmsnip, following mmdet 3.x's setup.py.

``add_mim_extension`` makes ``configs/`` and ``tools/`` reachable from the
installed package (``mmsnip/.mim/``), which is where ``mim train mmsnip``
and ``mim test mmsnip`` look for them.
"""
import os
import os.path as osp
import platform
import shutil
import sys
import warnings

from setuptools import find_packages, setup

MIM_FILES = ['tools', 'configs', 'demo', 'model-index.yml']


def readme() -> str:
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version() -> str:
    scope: dict = {}
    with open(osp.join('mmsnip', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'mmsnip/version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Requirement lines of ``fname`` without comments."""
    with open(fname, encoding='utf-8') as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('-')]


def add_mim_extension() -> None:
    """Link (editable installs) or copy (wheels) mim files into mmsnip/.mim.

    ``develop`` and ``editable_wheel`` (PEP 660, what ``pip install -e .``
    runs) get symlinks, so edits in ``configs/`` and ``tools/`` are live;
    ``bdist_wheel``/``sdist`` (``pip install .``) get copies.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'copy' if platform.system() == 'Windows' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return

    repo_path = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo_path, 'mmsnip', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in MIM_FILES:
        src = osp.join(repo_path, filename)
        tar = osp.join(mim_path, filename)
        if not osp.exists(src):
            continue
        if osp.isfile(tar) or osp.islink(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, osp.dirname(tar)), tar)
        elif osp.isfile(src):
            shutil.copyfile(src, tar)
        else:
            shutil.copytree(src, tar)
    if mode not in ('symlink', 'copy'):
        warnings.warn(f'Invalid mode {mode}')


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmsnip',
        version=get_version(),
        description='SNIP, SNIPER and AutoFocus multi-scale object '
        'detection for MMDetection 3.x',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, object detection, multi-scale, SNIPER, '
        'AutoFocus',
        packages=find_packages(exclude=('configs', 'tools', 'demo', 'tests')),
        include_package_data=True,
        python_requires='>=3.8',
        license='Apache License 2.0',
        classifiers=[
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Image Recognition',
        ],
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'tests': parse_requirements('requirements/tests.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
        },
        zip_safe=False)
