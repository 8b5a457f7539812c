# SimpleBaseline (ResNet-101) baseline: mmpose's own config, unchanged.
# Published result (mmpose model zoo, td-hm_res101_8xb64-210e_coco-256x192): AP 0.728, AR 0.783 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res101_8xb64-210e_coco-256x192.py'
