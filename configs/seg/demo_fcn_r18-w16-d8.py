# The demo segmentor's size-matched ResNet baseline: FCN with a dilated R-18 at quarter width
# (stem and base channels 16) and one 3x3 head conv of 144 channels, so that it has about the
# parameters and GFLOPs of HRNetV2-W18-Small + FCN 1x1 (1.22M / 42 GFLOPs at 1024x2048 against
# 1.54M / 33).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_fcn_r18-d8.py'
model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    decode_head=dict(in_channels=128, channels=144, num_convs=1))

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
