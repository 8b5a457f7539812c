# ResNet baseline of the HRNetV2p Mask R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, mask-rcnn_r101_fpn_1x_coco): box AP 40.0, mask AP 36.1 on COCO.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'
