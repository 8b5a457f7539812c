# The demo pose estimator's size-matched ResNet baseline: SimpleBaseline R-18 at 3/16 width
# (stem and base channels 12) with 160-channel deconvolutions, so that it has about the
# parameters and GFLOPs of HRNet-W18-Small (V1) (1.46M / 0.49 GFLOPs at 256x192 against
# 1.28M / 0.57).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_td-hm_res18.py'
model = dict(
    backbone=dict(stem_channels=12, base_channels=12),
    head=dict(in_channels=96, deconv_out_channels=(160, 160, 160)))

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
