# ResNet baseline of the HRNetV2p Mask R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, mask-rcnn_r50_fpn_1x_coco): box AP 38.2, mask AP 34.7 on COCO.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
