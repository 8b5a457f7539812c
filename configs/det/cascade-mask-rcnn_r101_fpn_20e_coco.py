# ResNet baseline of the HRNetV2p Cascade Mask R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, cascade-mask-rcnn_r101_fpn_20e_coco): box AP 43.4, mask AP 37.8 on COCO.
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r101_fpn_20e_coco.py'
