# ResNet baseline of the HRNetV2p HTC configs: mmdet's own config (+ hrnet_mm imported).
# Published result (mmdet model zoo, htc_r50_fpn_20e_coco): box AP 43.3, mask AP 38.3 on COCO.
_base_ = 'mmdet::htc/htc_r50_fpn_20e_coco.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
