# ResNet baseline of the HRNetV2p Mask R-CNN configs: mmdet's own config (+ hrnet_mm imported).
# Published result (mmdet model zoo, mask-rcnn_r101_fpn_1x_coco): box AP 40.0, mask AP 36.1 on COCO.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
