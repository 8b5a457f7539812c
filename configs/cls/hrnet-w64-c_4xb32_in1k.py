# HRNet-W64-C (the paper's ImageNet classifier) through mmpretrain: mmpretrain's own HRNet-W64
# config with the backbone swapped for HRNetV2 with its classification representation, which
# gives the logits itself (mmpretrain's HRFuseScales neck and LinearClsHead hold the same layers
# there); mmpretrain's ClsHead adds only the loss and the predictions. mmpretrain's weights load
# after tools/convert_weights.py (layout mmpretrain), and give the same logits.
# Published result (mmpretrain model zoo, hrnet-w64_3rdparty_8xb32_in1k): top-1 79.46, top-5 94.65
# on ImageNet-1k val (128.06M parameters).
_base_ = 'mmpretrain::hrnet/hrnet-w64_4xb32_in1k.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='HRNetV2', arch='w64', representation='cls'),
    neck=None,
    head=dict(_delete_=True, type='ClsHead', loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
              topk=(1, 5)))
