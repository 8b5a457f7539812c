# ResNet baseline of the HRNetV2p Mask R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, mask-rcnn_r101_fpn_2x_coco): box AP 40.8, mask AP 36.6 on COCO.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_2x_coco.py'
