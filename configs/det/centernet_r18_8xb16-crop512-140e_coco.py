# ResNet baseline of the HRNetV2 CenterNet configs: mmdet's own config (+ hrnet_mm imported).
# Published result (mmdet model zoo, centernet_r18_8xb16-crop512-140e_coco): box AP 25.9 on COCO.
_base_ = 'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
