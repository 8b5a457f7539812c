# The demo detector's size-matched ResNet baseline: Faster R-CNN R-18 FPN at half width (stem
# and base channels 32 instead of 64), so that it has about the parameters and GFLOPs of
# Faster R-CNN HRNetV2p-W18-Small (9.16M / 117 GFLOPs at 800x1333 against 8.37M / 123).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_faster-rcnn_r18_fpn.py'
model = dict(
    backbone=dict(stem_channels=32, base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256]))

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
