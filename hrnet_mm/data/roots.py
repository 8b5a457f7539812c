"""Point a demo config at a folder of real data.

The demo configs (``configs/{det,seg,pose}/demo_*.py``) read the embedded dataset. Given
another root, :func:`use_data_root` re-roots every dataset and evaluator of the config there,
finding each file in the first layout that the folder has:

========================= ================================ ================================
what the demo reads       COCO layout                      mmseg layout
========================= ================================ ================================
``annotations/X_train.json`` ``annotations/X_train2017.json``  -
``images/train/``         ``train2017/``                   ``img_dir/train/``
``masks/train``           -                                ``ann_dir/train``
========================= ================================ ================================

(``val`` likewise.) Detection takes its classes from the training annotation file's categories
(and sets the box head's ``num_classes``); pose needs COCO's 17 person keypoints; segmentation
takes its classes from ``classes.txt`` in the root (one name per line, in label order) when
there is one. Classification reads the embedded layout (``cls/train.txt`` of ``file label``
lines, images in ``cls/train/``) or ImageNet's (``train/<class>/*``, ``val/<class>/*``; the
classes are the sorted folder names of ``train/``). Other file names: ``--cfg-options`` after
it.

Example:
    >>> cfg = Config.fromfile('configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py')
    >>> use_data_root(cfg, 'data/coco')
    'data/coco: annotations/instances_train2017.json, train2017/, ...; 80 classes'
"""
import json
import os
import os.path as osp
from typing import Iterator, List, Mapping, Optional, Tuple

from .check import DatasetError, _datasets

SPLITS = ('train', 'val')


def _candidates(rel: str) -> List[str]:
    """Where the demo's relative path ``rel`` may be in another layout, demo's own first."""
    out = [rel]
    for s in SPLITS:
        out += [rel.replace(f'_{s}.json', f'_{s}2017.json'),
                rel.replace(f'images/{s}', f'{s}2017'), rel.replace(f'images/{s}', f'img_dir/{s}'),
                rel.replace(f'masks/{s}', f'ann_dir/{s}')]
    return list(dict.fromkeys(out))


def _find(root: str, rel: str) -> str:
    for candidate in _candidates(rel):
        if osp.exists(osp.join(root, candidate)):
            return candidate
    raise DatasetError(f'{root}: none of {_candidates(rel)} is there (the layouts: the '
                       'embedded dataset\'s, COCO\'s and mmseg\'s; see hrnet_mm/data/roots.py)')


def split_datasets(cfg) -> Iterator[Tuple[str, Mapping]]:
    """``(split, dataset config)`` of every dataset with a ``data_root`` that the config's
    train, val and test loaders read (wrapped ones included)."""
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader:
            for ds in _datasets(loader['dataset']):
                if 'data_root' in ds:
                    yield split, ds


def _coco_classes(ann_file: str) -> Tuple[str, ...]:
    with open(ann_file) as f:
        cats = json.load(f).get('categories') or []
    if not cats:
        raise DatasetError(f'{ann_file}: no categories')
    return tuple(c['name'] for c in sorted(cats, key=lambda c: c['id']))


def _set_num_classes(model: Mapping, n: int, heads: Tuple[str, ...]) -> None:
    for name in heads:
        head = model.get(name)
        if isinstance(head, Mapping) and 'num_classes' in head:
            head['num_classes'] = n
    roi = model.get('roi_head')
    if isinstance(roi, Mapping) and isinstance(roi.get('bbox_head'), Mapping):
        roi['bbox_head']['num_classes'] = n


def use_data_root(cfg, root: str) -> str:
    """Re-root ``cfg``'s datasets and evaluators at ``root`` (in place); a summary back.

    Raises:
        DatasetError: A file of the config is in none of the layouts, or the data does not
            fit the task (no categories; pose data without the 17 COCO keypoints).
    """
    if not osp.isdir(root):
        raise DatasetError(f'{root}: no such folder')
    if _is_cls(cfg):
        return _use_cls_root(cfg, root)
    found, classes, old_roots = [], None, set()
    for split, ds in split_datasets(cfg):
        old_roots.add(ds['data_root'])
        ds['data_root'] = root
        if ds.get('ann_file'):
            ds['ann_file'] = _find(root, ds['ann_file'])
            found.append(ds['ann_file'])
        prefix = ds.get('data_prefix') or {}
        for key, rel in list(prefix.items()):
            prefix[key] = _find(root, rel)
            found.append(prefix[key])
        if split == 'train' and ds.get('ann_file') and 'metainfo' in ds:
            classes = _coco_classes(osp.join(root, ds['ann_file']))
    for split in ('val', 'test'):
        evaluator = cfg.get(f'{split}_evaluator')
        if isinstance(evaluator, Mapping) and evaluator.get('ann_file'):
            rel = evaluator['ann_file']
            if not any(rel.startswith(old) for old in old_roots) and osp.isfile(rel):
                continue  # set by the user (--cfg-options) to a file that is there
            for old in old_roots:
                rel = rel[len(old):] if rel.startswith(old) else rel
            evaluator['ann_file'] = osp.join(root, _find(root, rel.lstrip('/')))
    if _is_pose(cfg):
        _check_keypoints(root, cfg)
    if classes is None and osp.isfile(osp.join(root, 'classes.txt')):
        with open(osp.join(root, 'classes.txt')) as f:
            classes = tuple(line.strip() for line in f if line.strip())
    if classes is not None:
        for _, ds in split_datasets(cfg):
            ds['metainfo'] = dict(classes=classes)
        _set_num_classes(cfg.model, len(classes),
                         ('bbox_head', 'decode_head', 'auxiliary_head'))
    n = f'; {len(classes)} classes' if classes else ''
    return f"{root}: {', '.join(dict.fromkeys(found))}{n}"


def _is_cls(cfg) -> bool:
    return any(ds.get('type') == 'CustomDataset' for _, ds in split_datasets(cfg))


def _use_cls_root(cfg, root: str) -> str:
    """Classification: the embedded layout if the root has it, else ImageNet's class folders."""
    embedded = all(osp.isfile(osp.join(root, f'cls/{s}.txt')) for s in SPLITS)
    classes = None
    if not embedded:
        missing = [s for s in SPLITS if not osp.isdir(osp.join(root, s))]
        if missing:
            raise DatasetError(f'{root}: neither cls/train.txt and cls/val.txt (the embedded '
                               f'layout) nor the folders {missing} of class folders (ImageNet\'s)')
        classes = tuple(sorted(d.name for d in os.scandir(osp.join(root, 'train'))
                               if d.is_dir()))
        if not classes:
            raise DatasetError(f'{root}/train: no class folders in it')
    for split, ds in split_datasets(cfg):
        ds['data_root'] = root
        if not embedded:
            ds['ann_file'] = ''  # CustomDataset then reads the class folders
            ds['data_prefix'] = 'train' if split == 'train' else 'val'
            ds['metainfo'] = dict(classes=classes)
    if classes is None:
        return f'{root}: cls/train.txt, cls/val.txt (the embedded layout)'
    backbone, head = cfg.model.get('backbone', {}), cfg.model.get('head', {})
    representation = backbone.get('representation')
    if isinstance(representation, Mapping) and 'num_classes' in representation:
        representation['num_classes'] = len(classes)
    if isinstance(head, Mapping) and 'num_classes' in head:
        head['num_classes'] = len(classes)
    if isinstance(cfg.get('data_preprocessor'), Mapping):
        cfg.data_preprocessor['num_classes'] = len(classes)
    return f'{root}: train/, val/ (class folders); {len(classes)} classes'


def _is_pose(cfg) -> bool:
    return cfg.get('model', {}).get('type') == 'TopdownPoseEstimator'


def _check_keypoints(root: str, cfg) -> None:
    for _, ds in split_datasets(cfg):
        path = osp.join(root, ds['ann_file'])
        with open(path) as f:
            cats = json.load(f).get('categories') or [{}]
        if len(cats[0].get('keypoints') or []) != 17:
            raise DatasetError(f'{path}: the pose demos need COCO person keypoints (17 per '
                               f'person); the first category has '
                               f'{len(cats[0].get("keypoints") or [])}')


def data_root_option(parser) -> None:
    """``--data-root DIR`` for a tool: a folder of real data for a demo config."""
    parser.add_argument('--data-root', help='train / test a demo config on this folder of '
                        'real data (COCO or mmseg layout; see hrnet_mm/data/roots.py)')


def apply_data_root(cfg, root: Optional[str]) -> None:
    """What a tool does with ``--data-root``: re-root ``cfg`` and print where the data is."""
    if root:
        print(f'data: {use_data_root(cfg, root)}', flush=True)
