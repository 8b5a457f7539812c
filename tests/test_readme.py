"""The config snippets in README.md build through their library and run."""
import re
from pathlib import Path

import torch
from mmengine.config import Config

from hrnet_mm import HRNetV2
from hrnet_mm.registry import build_in_library

README = Path(__file__).resolve().parents[1] / 'README.md'


def _snippets():
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    found = {}
    for block in blocks:
        m = re.match(r"_base_ = '(mm\w+)::", block)
        if m:
            found[m.group(1)] = block
    return found


SNIPPETS = _snippets()


def test_readme_has_a_snippet_per_library():
    assert sorted(SNIPPETS) == ['mmdet', 'mmpose', 'mmpretrain', 'mmseg']


def _build(library):
    cfg = Config.fromstring(SNIPPETS[library], file_format='.py')
    model = build_in_library(cfg.model, library)
    assert type(model.backbone) is HRNetV2
    model.eval()
    return cfg, model


def test_mmdet_snippet_detects():
    from mmdet.structures import DetDataSample
    cfg, model = _build('mmdet')
    assert cfg.model.neck is None and model.backbone.representation == 'v2p'
    x = torch.rand(1, 3, 128, 160)
    meta = dict(img_shape=(128, 160), ori_shape=(128, 160), scale_factor=(1.0, 1.0))
    with torch.no_grad():
        feats = model.extract_feat(x)
        results = model.predict(x, [DetDataSample(metainfo=meta)])
    assert [f.shape[1] for f in feats] == [256] * 5
    # the RPN's anchor strides are the pyramid's declared strides
    assert list(model.rpn_head.prior_generator.strides) == [
        (s, s) for s in model.backbone.out_strides]
    assert results[0].pred_instances.bboxes.shape[1] == 4


def test_mmseg_snippet_segments():
    cfg, model = _build('mmseg')
    assert model.backbone.representation == 'v2'
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 96, 128), mode='tensor')
    assert logits.shape == (1, 19, 24, 32)


def test_mmpose_snippet_estimates_heatmaps():
    cfg, model = _build('mmpose')
    assert model.backbone.representation == 'v1'
    with torch.no_grad():
        heatmaps = model(torch.rand(1, 3, 256, 192), None, mode='tensor')
    assert heatmaps.shape == (1, 17, 64, 48)


def test_mmpretrain_snippet_classifies():
    import pytest
    pytest.importorskip('mmpretrain')
    cfg, model = _build('mmpretrain')
    assert model.backbone.representation == 'cls' and cfg.model.neck is None
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64), mode='tensor')
    assert logits.shape == (2, 1000)


def _part_snippets():
    """The *Parts* section's configs (they start with a comment saying what they build)."""
    blocks = re.findall(r'```python\n(#[^\n]*\n_base_ = .*?)```', README.read_text(), flags=re.S)
    return [b for b in blocks if 'Representation' in b]


def test_parts_snippets_build_and_detect():
    snippets = _part_snippets()
    assert len(snippets) == 2
    for snippet in snippets:
        cfg = Config.fromstring(snippet, file_format='.py')
        cfg.model.backbone.init_cfg = None  # random weights: nothing to download
        model = build_in_library(cfg.model, 'mmdet')
        model.eval()
        assert type(model.neck).__name__ == 'V2pRepresentation'
        with torch.no_grad():
            feats = model.extract_feat(torch.rand(1, 3, 128, 160))
        # stride 4, then pooled by 2, 4, 8, 16 (floor)
        assert [tuple(f.shape[-2:]) for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5),
                                                         (2, 2)]
