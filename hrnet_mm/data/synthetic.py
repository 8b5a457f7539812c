"""A small, deterministic dataset the project generates itself: no download needed.

Images hold simple objects (filled boxes and discs) and person-like stick figures with the 17
COCO keypoints, written as real dataset files that the libraries' own dataset classes and
evaluators read:

- ``annotations/instances_{split}.json``: COCO instances (boxes and RLE masks; classes
  ``person``, ``box``, ``disc``) for mmdet's ``CocoDataset`` and ``CocoMetric``;
- ``annotations/person_keypoints_{split}.json``: COCO keypoints (17 per person, COCO's
  names, skeleton and order, so COCO's keypoint evaluator applies) for mmpose's ``CocoDataset``;
- ``masks/{split}/*.png``: semantic segmentation (0 background, 1 person, 2 box, 3 disc) for
  mmseg's ``BaseSegDataset``;
- ``cls/{split}/*.png`` and ``cls/{split}.txt``: classification, every object cut out with
  wide context (other objects often show too) and resized to 64x64, one ``file label`` line
  each (labels index ``CLASSES``), for mmpretrain's ``CustomDataset``;
- ``images/{split}/*.jpg``.

Example:
    >>> summary = generate('data/hrnet_mm_demo', num_train=48, num_val=16)
    >>> summary['train']['persons'] > 0
    True
"""
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..folders import publish, start_partial
from .roots import split_datasets

CLASSES = ('person', 'box', 'disc')
SEG_CLASSES = ('background', ) + CLASSES
KEYPOINTS = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
             'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
             'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
            [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6],
            [5, 7]]  # COCO's, 1-based
# A standing figure in a unit box (x right, y down), facing the viewer: the person's left
# side is on the image's right, as in COCO.
_POSE = np.array([
    [0.50, 0.08], [0.54, 0.06], [0.46, 0.06], [0.58, 0.08], [0.42, 0.08],  # face
    [0.66, 0.22], [0.34, 0.22], [0.74, 0.38], [0.26, 0.38], [0.78, 0.52], [0.22, 0.52],  # arms
    [0.60, 0.52], [0.40, 0.52], [0.62, 0.74], [0.38, 0.74], [0.64, 0.96], [0.36, 0.96]])  # legs
_LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6),
          (11, 12), (5, 11), (6, 12)]  # 0-based pairs drawn as thick lines


def _overlaps(box: Tuple[int, int, int, int], boxes: List[Tuple[int, int, int, int]]) -> bool:
    x, y, w, h = box
    return any(x < bx + bw and bx < x + w and y < by + bh and by < y + h
               for bx, by, bw, bh in boxes)


def _person(rng: np.random.RandomState, canvas: np.ndarray, mask: np.ndarray,
            box: Tuple[int, int, int, int]) -> np.ndarray:
    """Draw a stick figure into ``box``; returns its 17 keypoints (x, y) in pixels."""
    x, y, w, h = box
    pts = _POSE + rng.uniform(-0.04, 0.04, _POSE.shape)  # a slightly different pose each time
    kpts = np.stack([x + pts[:, 0] * w, y + pts[:, 1] * h], axis=1)
    color = tuple(int(c) for c in rng.randint(40, 220, 3))
    thick = max(2, int(w * 0.09))
    for a, b in _LIMBS:
        pa, pb = tuple(np.round(kpts[a]).astype(int)), tuple(np.round(kpts[b]).astype(int))
        cv2.line(canvas, pa, pb, color, thick)
        cv2.line(mask, pa, pb, 1, thick)
    head = tuple(np.round(kpts[0] + [0, 0.02 * h]).astype(int))
    radius = max(3, int(0.09 * h))
    cv2.circle(canvas, head, radius, color, -1)
    cv2.circle(mask, head, radius, 1, -1)
    for k in range(1, 5):  # eyes and ears as dots on the head, so they can be seen
        cv2.circle(canvas, tuple(np.round(kpts[k]).astype(int)), 1, (255, 255, 255), -1)
    return kpts


def _image(rng: np.random.RandomState, size: int):
    """One image, its semantic mask, and its objects [(class, box, mask, keypoints)]."""
    base = rng.randint(0, 80, 3)
    canvas = np.tile(base, (size, size, 1)).astype(np.uint8)
    canvas = cv2.add(canvas, rng.randint(0, 30, (size, size, 3)).astype(np.uint8))
    semantic = np.zeros((size, size), np.uint8)
    objects, boxes = [], []
    wanted = ['person'] * rng.randint(1, 3) + list(rng.choice(['box', 'disc'], rng.randint(1, 3)))
    for cls in wanted:
        for _ in range(30):  # rejection sampling: objects do not overlap
            if cls == 'person':
                h = rng.randint(size // 3, int(size * 0.7))
                w = int(h * rng.uniform(0.45, 0.6))
            else:
                w = h = rng.randint(size // 7, size // 3)
            box = (rng.randint(0, size - w), rng.randint(0, size - h), w, h)
            if not _overlaps(box, boxes):
                break
        else:
            continue
        boxes.append(box)
        obj_mask = np.zeros((size, size), np.uint8)
        kpts = None
        x, y, w, h = box
        if cls == 'person':
            kpts = _person(rng, canvas, obj_mask, box)
        else:
            color = tuple(int(c) for c in rng.randint(100, 256, 3))
            if cls == 'box':
                cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), color, -1)
                cv2.rectangle(obj_mask, (x, y), (x + w - 1, y + h - 1), 1, -1)
            else:
                center, radius = (x + w // 2, y + h // 2), w // 2
                cv2.circle(canvas, center, radius, color, -1)
                cv2.circle(obj_mask, center, radius, 1, -1)
        semantic[obj_mask > 0] = SEG_CLASSES.index(cls)
        objects.append((cls, obj_mask, kpts))
    return canvas, semantic, objects


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _split(root: str, split: str, num: int, size: int, seed: int) -> Dict[str, int]:
    rng = np.random.RandomState(seed)
    crop_rng = np.random.RandomState(seed + 10_000)  # its own stream: the images stay as before
    for sub in (f'images/{split}', f'masks/{split}', 'annotations', f'cls/{split}'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    images, instances, keypoints, crops = [], [], [], []
    categories = [dict(id=i + 1, name=c, supercategory=c) for i, c in enumerate(CLASSES)]
    person_category = dict(id=1, name='person', supercategory='person',
                           keypoints=list(KEYPOINTS), skeleton=SKELETON)
    for index in range(num):
        canvas, semantic, objects = _image(rng, size)
        name = f'{split}_{index:04d}'
        cv2.imwrite(osp.join(root, f'images/{split}/{name}.jpg'), canvas,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(root, f'masks/{split}/{name}.png'), semantic)
        images.append(dict(id=index + 1, file_name=f'{name}.jpg', width=size, height=size))
        for cls, obj_mask, kpts in objects:
            rle = mask_utils.encode(np.asfortranarray(obj_mask))
            rle['counts'] = rle['counts'].decode('ascii')
            ann = dict(id=len(instances) + 1, image_id=index + 1,
                       category_id=CLASSES.index(cls) + 1, bbox=_bbox(obj_mask),
                       area=float(obj_mask.sum()), segmentation=rle, iscrowd=0)
            instances.append(ann)
            crop = f'{name}_{len(crops):03d}.png'
            cv2.imwrite(osp.join(root, f'cls/{split}', crop), _crop(canvas, ann['bbox'], crop_rng))
            crops.append(f'{crop} {CLASSES.index(cls)}\n')
            if kpts is not None:
                flat = []
                for kx, ky in kpts:
                    inside = 0 <= kx < size and 0 <= ky < size
                    flat += [float(kx), float(ky), 2 if inside else 0]
                keypoints.append(dict(ann, id=len(keypoints) + 1, category_id=1,
                                      keypoints=flat, num_keypoints=sum(v > 0 for v in flat[2::3])))
    with open(osp.join(root, f'annotations/instances_{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=instances, categories=categories), f)
    with open(osp.join(root, f'annotations/person_keypoints_{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=keypoints, categories=[person_category]), f)
    with open(osp.join(root, f'cls/{split}.txt'), 'w') as f:
        f.writelines(crops)
    return dict(images=num, objects=len(instances), persons=len(keypoints), crops=len(crops))


CROP_SIZE = 64


def _crop(canvas: np.ndarray, bbox: List[float], rng: np.random.RandomState) -> np.ndarray:
    """A square of 1.6-2.6 times the object's longer side around it (shifted at random, so the
    object is not always centred and others often show too), resized to ``CROP_SIZE``; the
    image's edge pads black. (With 1.3-1.8x the ResNet-18 demo reached 100% top-1: too easy to
    compare anything.)"""
    x, y, w, h = bbox
    side = max(w, h) * rng.uniform(1.6, 2.6)
    cx = x + w / 2 + rng.uniform(-0.1, 0.1) * side
    cy = y + h / 2 + rng.uniform(-0.1, 0.1) * side
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = int(round(side))
    pad = n
    padded = cv2.copyMakeBorder(canvas, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    patch = padded[y0 + pad:y0 + pad + n, x0 + pad:x0 + pad + n]
    return cv2.resize(patch, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


#: Where the demo configs (``configs/_demo_/*_data.py``) read the dataset, relative to the
#: working directory.
DEMO_ROOT = 'data/hrnet_mm_demo'


def generate(root: str = DEMO_ROOT, num_train: int = 48, num_val: int = 16,
             size: int = 160, seed: int = 0) -> Dict[str, Dict[str, int]]:
    """Write the dataset under ``root`` (deterministic for a seed); returns counts per split."""
    return dict(train=_split(root, 'train', num_train, size, seed),
                val=_split(root, 'val', num_val, size, seed + 1))


#: The last file each part of :func:`generate` writes: where they are, the dataset is whole
#: (a copy from before the classification split lacks ``cls/val.txt``).
LAST_FILES = ('annotations/person_keypoints_val.json', 'cls/val.txt')


def is_complete(root: str) -> bool:
    """Whether ``root`` holds a whole dataset written by this version (:data:`LAST_FILES`)."""
    return all(osp.isfile(osp.join(root, f)) for f in LAST_FILES)


def ensure_generated(root: str = DEMO_ROOT) -> Dict[str, Dict[str, int]]:
    """Generate the dataset in ``root`` unless a complete one is there; returns
    :func:`generate`'s counts, or ``{}`` when it was there.

    It is written into a folder beside ``root`` and renamed into place, so a run killed while
    writing leaves no partial dataset behind, and processes that start together (distributed
    training) all find a complete one: the data is the same whichever of them wrote it. An
    incomplete copy (an older version's, or one killed while written in place) is replaced.

    Example:
        >>> ensure_generated('data/hrnet_mm_demo')['val']['images']   # not there yet
        16
        >>> ensure_generated('data/hrnet_mm_demo')                     # there: nothing to do
        {}
    """
    if is_complete(root):
        return {}
    root = osp.normpath(root)
    partial = start_partial(root, leftovers=('partial', 'incomplete'))
    counts = generate(partial)
    if osp.exists(root) and not is_complete(root):
        aside = f'{root}.incomplete-{os.getpid()}'
        try:
            os.rename(root, aside)
        except OSError:
            pass  # another process moved it first
        shutil.rmtree(aside, ignore_errors=True)
    if not publish(partial, root):
        if not is_complete(root):
            raise OSError(f'{root}: could not rename {partial} into place')
        return {}  # another process was first
    return counts


def prepare_demo_data(cfg: Optional[Mapping] = None) -> List[str]:
    """Generate the embedded dataset in :data:`DEMO_ROOT` (:func:`ensure_generated`) where a
    config's datasets read it (``data_root``; with no config, in any case) and a complete one
    is not there yet, as the demo configs need on a fresh clone; a line for the console when
    it was generated.

    Example:
        >>> prepare_demo_data(Config.fromfile('configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'))
        ['data/hrnet_mm_demo: generated the embedded dataset (48 train and 16 val images, 1.2 s)']
    """
    if cfg is not None and osp.normpath(DEMO_ROOT) not in {
            osp.normpath(ds['data_root']) for _, ds in split_datasets(cfg) if ds.get('data_root')}:
        return []
    start = time.time()
    counts = ensure_generated(DEMO_ROOT)
    if not counts:
        return []
    return [f'{DEMO_ROOT}: generated the embedded dataset ({counts["train"]["images"]} train and '
            f'{counts["val"]["images"]} val images, {time.time() - start:.1f} s)']
