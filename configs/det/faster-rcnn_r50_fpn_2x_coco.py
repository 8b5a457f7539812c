# ResNet baseline of the HRNetV2p Faster R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, faster-rcnn_r50_fpn_2x_coco): box AP 38.4 on COCO.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
