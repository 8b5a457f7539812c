# The demo classifier: HRNet-W18-Small-v1-C (the paper's classification head on
# HRNet-W18-Small-v1, 3 classes) on the embedded dataset; the ResNet-18 baseline with the
# backbone swapped. The backbone gives the logits (representation 'cls'); mmpretrain's ClsHead
# adds only the loss and the predictions.
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_resnet18.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18_small_v1',
        representation=dict(type='cls', num_classes=3)),
    neck=None,
    head=dict(_delete_=True, type='ClsHead', loss=dict(type='CrossEntropyLoss'), topk=(1, )))
