# The demo detector: Faster R-CNN with HRNetV2p-W18-Small-v1 on the embedded dataset; the R-18
# baseline with the backbone and neck swapped.
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_faster-rcnn_r18_fpn.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18_small_v1',
        representation=dict(type='v2p', out_channels=256, num_outs=5)),
    neck=None)
