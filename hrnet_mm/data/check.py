"""Check a config's dataset files before a run starts.

A broken dataset otherwise fails minutes into a run, deep inside a library's data pipeline,
with a message that names no file (``cv2.error ... !buf.empty()`` for an empty image,
``JSONDecodeError`` for an annotation file that is not JSON, "need at least one array to
concatenate" for a COCO file without images, an ``IndexError`` for a keypoint list of the
wrong length). :func:`check_data` reads each split's annotation file and looks at every image
it names (existence and size only: cheap), and raises a :class:`DatasetError` whose one line
names the file and what is wrong. Boxes that the datasets skip (zero or negative width or
height) are returned as warnings. ``tools/train.py`` and ``tools/test.py`` run it.

Example:
    >>> for warning in check_data(Config.fromfile(config), ('train', 'val')):
    ...     print(warning)
"""
import json
import os
import os.path as osp
from typing import Iterator, List, Mapping, Sequence


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names it."""


def _join(root: str, path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _datasets(cfg: Mapping) -> Iterator[Mapping]:
    """A dataset config and the ones wrapped inside it (RepeatDataset, ConcatDataset ...)."""
    yield cfg
    inner = cfg.get('dataset')
    if isinstance(inner, Mapping):
        yield from _datasets(inner)
    for ds in cfg.get('datasets') or []:
        if isinstance(ds, Mapping):
            yield from _datasets(ds)


def _check_image(path: str) -> None:
    if not osp.isfile(path):
        raise DatasetError(f'{path}: image file is missing')
    if osp.getsize(path) == 0:
        raise DatasetError(f'{path}: image file is empty (0 bytes)')


def check_coco(ann_file: str, img_dir: str) -> List[str]:
    """Check a COCO-format file (instances or keypoints) and its images; warnings back."""
    if not osp.isfile(ann_file):
        raise DatasetError(f'{ann_file}: annotation file not found')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f'{ann_file}: not a JSON file ({e.msg} at line {e.lineno}, column '
                           f'{e.colno})') from None
    except UnicodeDecodeError:
        raise DatasetError(f'{ann_file}: not a JSON file (binary content)') from None
    if not isinstance(coco, dict) or not isinstance(coco.get('images'), list):
        raise DatasetError(f'{ann_file}: no "images" list: a COCO file holds "images", '
                           '"annotations" and "categories" lists')
    if not coco['images']:
        raise DatasetError(f'{ann_file}: "images" is empty')
    for key in ('annotations', 'categories'):
        if not isinstance(coco.get(key, []), list):
            raise DatasetError(f'{ann_file}: "{key}" is not a list')
    num_keypoints = {c.get('id'): len(c['keypoints']) for c in coco.get('categories', [])
                     if isinstance(c, dict) and c.get('keypoints')}
    bad_boxes = []
    for ann in coco.get('annotations', []):
        kps = ann.get('keypoints')
        if kps is not None:
            k = num_keypoints.get(ann.get('category_id'), 17)
            if not isinstance(kps, list) or len(kps) != 3 * k:
                raise DatasetError(
                    f'{ann_file}: annotation id {ann.get("id")} (image {ann.get("image_id")}) has '
                    f'{len(kps) if isinstance(kps, list) else kps!r} keypoint values; {3 * k} '
                    f'expected (x, y, visibility for each of the {k} keypoints)')
        box = ann.get('bbox')
        if box is not None and (not isinstance(box, list) or len(box) != 4):
            raise DatasetError(f'{ann_file}: annotation id {ann.get("id")} has bbox {box!r}: '
                               'expected [x, y, width, height]')
        if box is not None and (box[2] <= 0 or box[3] <= 0):
            bad_boxes.append(ann)
    for image in coco['images']:
        if not isinstance(image, dict) or 'file_name' not in image:
            raise DatasetError(f'{ann_file}: an image entry without "file_name": {image!r:.80}')
        _check_image(osp.join(img_dir, image['file_name']))
    if bad_boxes:
        first = bad_boxes[0]
        return [f'{ann_file}: {len(bad_boxes)} boxes with zero or negative width or height are '
                f'skipped by the dataset (first: annotation id {first.get("id")}, bbox '
                f'{first.get("bbox")})']
    return []


def check_image_folder(img_dir: str, img_suffix: str, seg_dir: str = '',
                       seg_suffix: str = '.png') -> None:
    """Check a folder of images (and their segmentation maps), as mmseg reads them."""
    if not osp.isdir(img_dir):
        raise DatasetError(f'{img_dir}: image folder not found')
    images = sorted(n for n in os.listdir(img_dir) if n.endswith(img_suffix))
    if not images:
        raise DatasetError(f'{img_dir}: no *{img_suffix} images')
    for name in images:
        _check_image(osp.join(img_dir, name))
        if seg_dir:
            seg = osp.join(seg_dir, name[:-len(img_suffix)] + seg_suffix)
            if not osp.isfile(seg) or osp.getsize(seg) == 0:
                raise DatasetError(f'{seg}: segmentation map of {name} is missing or empty')


def check_data(cfg: Mapping, splits: Sequence[str] = ('train', 'val', 'test')) -> List[str]:
    """Check the dataset files of the config's ``<split>_dataloader`` s; returns warnings,
    raises :class:`DatasetError` on the first file that cannot be used."""
    warnings: List[str] = []
    seen = set()
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
            continue
        for ds in _datasets(loader['dataset']):
            root = ds.get('data_root') or ''
            prefix = ds.get('data_prefix') or {}
            ann = ds.get('ann_file')
            if ann and str(ann).endswith('.json'):
                ann_file = _join(root, ann)
                img_dir = _join(root, prefix.get('img', prefix.get('img_path', '')))
                if (ann_file, img_dir) not in seen:
                    seen.add((ann_file, img_dir))
                    warnings += check_coco(ann_file, img_dir)
            elif not ann and 'img_path' in prefix and ds.get('img_suffix'):
                img_dir = _join(root, prefix['img_path'])
                seg_dir = _join(root, prefix['seg_map_path']) if prefix.get('seg_map_path') else ''
                if img_dir not in seen:
                    seen.add(img_dir)
                    check_image_folder(img_dir, ds['img_suffix'], seg_dir,
                                       ds.get('seg_map_suffix', '.png'))
    return warnings
