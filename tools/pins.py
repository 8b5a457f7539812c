"""Whether tools/install.sh has anything left to install.

    python tools/pins.py CONSTRAINTS ITEM... [--no-deps ITEM]... [--editable NAME=DIR]

An ITEM is a requirements file or one requirement (``numpy``, ``cython>=3``). Every
requirement, and everything it needs (its ``Requires-Dist``, markers and extras applied, all
the way down), must be installed in this interpreter's environment at a version that meets the
requirement and the pin in CONSTRAINTS (``pip install -c``). ``--no-deps`` items are checked
without what they declare, as install.sh installs them (``mmpose`` declares ``chumpy``, which
does not install). ``--editable NAME=DIR``: NAME is installed editable from DIR, at DIR's
version.

Prints what was checked and exits 0 when nothing is missing; prints the first thing that is
missing or off its pin, in one line, and exits 1 otherwise. pip finds the same in about half a
minute and 170 lines of "Requirement already satisfied"; this takes about a second.

Example:
    $ python tools/pins.py requirements/constraints.txt requirements/runtime.txt
    66 packages installed as pinned
    $ python tools/pins.py requirements/constraints.txt 'mmdet==3.2.0'
    mmdet 3.3.0 is installed, mmdet==3.2.0 is required
"""
import argparse
import json
import re
import sys
from collections import deque
from importlib import metadata
from pathlib import Path
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare environment: pip brings its own copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.version import InvalidVersion, Version


class Unmet(Exception):
    """Something install.sh would install: the message says what, in one line."""


def canonical(name: str) -> str:
    """The name as pip compares names (PEP 503): ``Jinja2`` and ``jinja2``, ``hrnet_mm`` and
    ``hrnet-mm`` are the same package."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_lines(item: str) -> List[str]:
    """The requirements an ITEM stands for: the lines of a requirements file (comments, blank
    lines and pip options left out), or the item itself."""
    if not item.endswith('.txt'):
        return [item]
    lines = []
    for line in Path(item).read_text().splitlines():
        line = line.split(' #')[0].strip()
        if line and not line.startswith(('#', '-')):
            lines.append(line)
    return lines


def parse(line: str, source: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as e:
        raise Unmet(f'{source}: cannot read the requirement {line!r} ({e})') from None


def applies(req: Requirement, extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` applies here, for a package installed with ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({'extra': extra}) for extra in ('', *extras))


def installed(path: Optional[Sequence[str]] = None) -> Dict[str, metadata.Distribution]:
    """The environment's distributions by canonical name (the first on the path wins, as for
    an import)."""
    found: Dict[str, metadata.Distribution] = {}
    dists = metadata.distributions(path=list(path)) if path is not None else \
        metadata.distributions()
    for dist in dists:
        meta = dist.metadata  # None (or empty) for a broken install without its METADATA
        name = meta['Name'] if meta is not None else None
        if name:
            found.setdefault(canonical(name), dist)
    return found


def check(constraints: str, items: Sequence[str], no_deps: Sequence[str] = (),
          editable: Sequence[Tuple[str, str]] = (),
          path: Optional[Sequence[str]] = None) -> int:
    """Check the requirements (module docstring); return how many packages were checked.

    Raises:
        Unmet: the first requirement that install.sh would have to install.
    """
    pins: Dict[str, List[Requirement]] = {}
    for line in requirement_lines(constraints):
        req = parse(line, constraints)
        if applies(req):
            pins.setdefault(canonical(req.name), []).append(req)
    dists = installed(path)
    # (requirement, what needs it: '' for one asked for, walk its needs)
    todo: Deque[Tuple[Requirement, str, bool]] = deque()
    for items_, walk in ((items, True), (no_deps, False)):
        for item in items_:
            source = Path(item).name if item.endswith('.txt') else ''
            todo += [(parse(line, source or item), source, walk)
                     for line in requirement_lines(item)]
    walked, checked = set(), set()
    while todo:
        req, needed_by, walk = todo.popleft()  # in the order given: torch before its needs
        if not applies(req):
            continue
        name = canonical(req.name)
        dist = dists.get(name)
        by = f' (needed by {needed_by})' if needed_by else ''
        if dist is None:
            raise Unmet(f'{req.name} is not installed{by}')
        try:
            version = Version(dist.version)
        except InvalidVersion:
            raise Unmet(f'{req.name} {dist.version} is installed, a version pip cannot read') \
                from None
        for wanted in [req] + pins.get(name, []):
            if not wanted.specifier.contains(version, prereleases=True):
                raise Unmet(f'{req.name} {dist.version} is installed, {wanted} is required'
                            + (by if wanted is req else f' ({Path(constraints).name})'))
        checked.add(name)
        if walk and (name, tuple(sorted(req.extras))) not in walked:
            walked.add((name, tuple(sorted(req.extras))))
            for line in dist.requires or []:
                dep = parse(line, f'{req.name} {dist.version}')
                if applies(dep, req.extras):
                    dep.marker = None  # evaluated here, with the extras of the package
                    todo.append((dep, f'{req.name} {dist.version}', True))
    for name, folder in editable:
        dist = dists.get(canonical(name))
        if dist is None:
            raise Unmet(f'{name} is not installed')
        url = json.loads(dist.read_text('direct_url.json') or '{}')
        where = Path(folder).resolve().as_uri()
        if url.get('url') != where or not url.get('dir_info', {}).get('editable'):
            raise Unmet(f'{name} is installed from {url.get("url", "an index")}, '
                        f'not editable from {where}')
        own = re.search(r"__version__ = '([^']+)'",
                        (Path(folder) / name / 'version.py').read_text())
        if own and own.group(1) != dist.version:
            raise Unmet(f'{name} {dist.version} is installed, {folder} is {own.group(1)}')
    return len(checked | {canonical(n) for n, _ in editable})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('constraints', help='pins, as for pip install -c')
    parser.add_argument('items', nargs='*', help='requirements files or requirements')
    parser.add_argument('--no-deps', action='append', default=[], metavar='ITEM',
                        help='checked without what it declares (installed with --no-deps)')
    parser.add_argument('--editable', action='append', default=[], metavar='NAME=DIR',
                        help='installed editable from DIR')
    args = parser.parse_intermixed_args(argv)
    editable = [tuple(e.split('=', 1)) for e in args.editable]
    try:
        count = check(args.constraints, args.items, args.no_deps, editable)
    except Unmet as e:
        print(e)
        return 1
    print(f'{count} packages installed as pinned')
    return 0


if __name__ == '__main__':
    sys.exit(main())
