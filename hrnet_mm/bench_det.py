"""Faster R-CNN training step, side by side: mmdet's own HRNetV2p detector (its ``HRNet`` +
``HRFPN``), hrnet_mm's (``HRNetV2`` with ``representation='v2p'``, same weights, same heads),
each also with ``channels_last``, and mmdet's ResNet-50-FPN detector (the paper's baseline).

The configs are the real ones: mmdet's ``hrnet/faster-rcnn_hrnetv2p-<arch>-1x_coco.py`` and
``faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py``, and hrnet_mm's
``configs/det/faster-rcnn_hrnetv2p-<arch>_1x_coco.py``. The batch is synthetic (random images,
a few random boxes each), preprocessed once; a step is forward with losses, backward and an
SGD step. ``tools/benchmark.py --model faster_rcnn`` is the command line.
"""
import copy
import os.path as osp
import platform
import time
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from . import compiling
from .bench import (PRECISIONS, Row, _autocast, _device_name, check_agreement, measure_rows,
                    randomize_weights, snapshot)
from .cuda_graphs import graph_features
from .fast import use_channels_last
from .padding import pad_channels as pad_model_channels
from .streams import parallel_branches
from .weights.layouts import convert_state_dict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STOCK = 'mmdet HRNetV2p (HRNet + HRFPN)'
OURS = 'hrnet_mm HRNetV2p'
RESNET = 'mmdet R-50-FPN'


def _build(config: str) -> nn.Module:
    from mmengine.config import Config
    from mmdet.utils import register_all_modules

    from .registry import build_in_library
    register_all_modules(init_default_scope=False)
    if config.startswith('mmdet::'):  # a config that mmdet ships
        import mmdet
        config = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', config[7:])
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # random weights: nothing to download
    return build_in_library(cfg.model, 'mmdet')


def build_detectors(arch: str = 'w18', seed: int = 0) -> Dict[str, nn.Module]:
    """The three detectors; the stock HRNet one has random weights, hrnet_mm's loads them
    (``neck.*`` -> ``backbone.head.*``, the ``mmdet`` layout) strictly."""
    stock = randomize_weights(_build(f'mmdet::hrnet/faster-rcnn_hrnetv2p-{arch}-1x_coco.py'),
                              seed)
    ours = _build(osp.join(ROOT, f'configs/det/faster-rcnn_hrnetv2p-{arch}_1x_coco.py'))
    conversion = convert_state_dict(stock.state_dict(), layout='mmdet')
    if conversion.unmapped:
        raise RuntimeError(f'unmapped keys converting the stock detector: {conversion.unmapped}')
    ours.load_state_dict(conversion.state_dict, strict=True)
    resnet = randomize_weights(_build('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'), seed)
    return {STOCK: stock, OURS: ours, RESNET: resnet}


def synthetic_batch(batch: int, size: Sequence[int], num_boxes: int = 8, seed: int = 0) -> dict:
    """Random uint8 images with ``num_boxes`` random boxes each, as mmdet's data loaders give."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 32 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([w * 0.25, h * 0.25])
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, 80, (num_boxes, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _train_step(model: nn.Module, data: dict, device: torch.device,
                precision: str) -> Callable[[], None]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == 'fp16')

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step.optimizer = optimizer
    return step


def run_faster_rcnn(arch: str = 'w18', batch: int = 2, size: Sequence[int] = (800, 1216),
                    precision: str = 'fp32', device: str = 'cpu', warmup: int = 1,
                    repeats: int = 5, memory: bool = True, profile: bool = False,
                    pad_channels: Optional[int] = None, compile: Optional[str] = None,
                    streams: bool = False, progress: Callable[[str], None] = print,
                    save: Optional[Callable[[dict], None]] = None) -> dict:
    """Time the training step of each detector (in turns); returns a JSON-able dict in
    :func:`hrnet_mm.bench.format_table`'s form (ratios against the stock HRNet detector).

    ``pad_channels`` adds hrnet_mm's channels_last detector with its backbone's widths
    padded to that multiple (:mod:`hrnet_mm.padding`); ``streams`` the same detectors
    (channels_last, and padded) with their backbone's branches on parallel CUDA streams
    (:mod:`hrnet_mm.streams`).
    ``compile`` (``'compile'``,
    ``'cudagraphs'`` or ``'graphs'``) adds the channels_last HRNet detectors (stock, hrnet_mm,
    padded) with backbone and neck (``extract_feat``) compiled by inductor, ``'cudagraphs'``
    replaying them as CUDA graphs (``mode='reduce-overhead'``), ``'graphs'`` replaying the
    eager ones as CUDA graphs (:class:`~hrnet_mm.cuda_graphs.CUDAGraphed`, no compiling): the
    image size is fixed here, as in mmdet's COCO recipe batches of one shape, so the graphs
    are static. ``save``: as in
    :func:`hrnet_mm.bench.run`, the results so far after each round and each row's memory or
    profile."""
    if compile not in (None, 'compile', 'cudagraphs', 'graphs'):
        raise ValueError(f"compile={compile!r}: None, 'compile', 'cudagraphs' or 'graphs'")
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}; allowed: {list(PRECISIONS)}')
    dev = torch.device(device)
    progress(f'building the Faster R-CNN detectors ({arch}, and R-50-FPN)')
    models = {name: m.to(dev) for name, m in build_detectors(arch).items()}
    raw = synthetic_batch(batch, size)
    data = models[STOCK].data_preprocessor(copy.deepcopy(raw), True)

    rows: Dict[str, Row] = {name: Row(name, precision) for name in models}
    # Same weights, same features: the backbones and pyramids compute the same (eval mode).
    with torch.no_grad(), _autocast(dev, precision):
        stock_feats = models[STOCK].eval().extract_feat(data['inputs'])

    def checked_diff(name: str) -> float:
        with torch.no_grad(), _autocast(dev, precision):
            feats = models[name].eval().extract_feat(data['inputs'])
        return check_agreement(stock_feats, feats, precision, f'the stock detector and {name}')

    rows[OURS].max_abs_diff = checked_diff(OURS)
    for name in (STOCK, OURS):  # the generic tool a user has for both
        fast_name = f'{name} [channels_last]'
        models[fast_name] = use_channels_last(copy.deepcopy(models[name]))
        rows[fast_name] = Row(fast_name, precision)
    if pad_channels:
        padded = f'{OURS} [channels_last, pad {pad_channels}]'
        models[padded] = pad_model_channels(copy.deepcopy(models[f'{OURS} [channels_last]']),
                                            pad_channels)
        rows[padded] = Row(padded, precision, max_abs_diff=checked_diff(padded))
    eager = [f'{OURS} [channels_last]'] + ([padded] if pad_channels else [])
    if streams:  # each of those with its branches on parallel streams too
        for name in list(eager):
            parallel = f'{name[:-1]}, streams]'
            models[parallel] = parallel_branches(copy.deepcopy(models[name]))
            rows[parallel] = Row(parallel, precision, max_abs_diff=checked_diff(parallel))
            eager.append(parallel)
    # each hrnet_mm row and the stock row with the same generic tools
    pairs = dict.fromkeys(eager, f'{STOCK} [channels_last]')
    if compile:
        for name in [f'{STOCK} [channels_last]'] + eager:
            fast_name = f'{name[:-1]}, {compile}]'
            models[fast_name] = model = copy.deepcopy(models[name])
            if compile == 'graphs':
                graph_features(model)
            else:
                model.extract_feat = compiling.compile(
                    model.extract_feat,
                    mode='reduce-overhead' if compile == 'cudagraphs' else None)
            rows[fast_name] = Row(fast_name, precision)
        pairs.update({f'{n[:-1]}, {compile}]': f'{STOCK} [channels_last, {compile}]'
                      for n in eager})
    results = dict(arch=f'Faster R-CNN {arch}', representation='v2p', batch=batch,
                   size=list(size), precision=precision, device=_device_name(dev),
                   baseline=STOCK, warmup=warmup, repeats=repeats, torch=torch.__version__,
                   python=platform.python_version(), threads=torch.get_num_threads(),
                   pad_channels=pad_channels, compile=compile, streams=streams,
                   date=time.strftime('%Y-%m-%d'), stock_pairs=pairs)

    steps = {name: _train_step(m.train(), data, dev, precision) for name, m in models.items()}
    measure_rows(steps, models, {name: step.optimizer for name, step in steps.items()}, 'train',
                 dev, batch, rows, warmup, repeats, memory, profile, progress,
                 lambda what: save(snapshot(results, rows, what)) if save else None)
    return snapshot(results, rows)
