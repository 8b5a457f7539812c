# ResNet baseline of the HRNetV2p Faster R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, faster-rcnn_r101_fpn_1x_coco): box AP 39.4 on COCO.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py'
