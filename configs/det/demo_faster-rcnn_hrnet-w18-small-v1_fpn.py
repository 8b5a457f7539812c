# The demo detector with the other head of the paper's comparison: HRNet-W18-Small-v1's four
# branches into mmdet's FPN (in place of the V2+p pyramid), on the embedded dataset; the R-18
# baseline with the backbone (and the FPN's input widths) swapped. Used by the main job's
# --ablation (V2+p against branches + FPN).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_faster-rcnn_r18_fpn.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18_small_v1',
        representation='branches'),
    neck=dict(in_channels=[16, 32, 64, 128]))
