# ResNet baseline of the HRNetV2p Cascade Mask R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, cascade-mask-rcnn_r50_fpn_20e_coco): box AP 41.9, mask AP 36.5 on COCO.
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_20e_coco.py'
