# SimpleBaseline (ResNet-50) baseline: mmpose's own config, unchanged.
# Published result (mmpose model zoo, td-hm_res50_8xb64-210e_coco-256x192): AP 0.718, AR 0.774 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py'
