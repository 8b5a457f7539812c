# SimpleBaseline (ResNet-101) baseline: mmpose's own config (+ hrnet_mm imported).
# Published result (mmpose model zoo, td-hm_res101_8xb64-210e_coco-256x192): AP 0.728, AR 0.783 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res101_8xb64-210e_coco-256x192.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
