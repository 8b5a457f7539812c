# SimpleBaseline (ResNet-152) baseline: mmpose's own config, unchanged.
# Published result (mmpose model zoo, td-hm_res152_8xb32-210e_coco-256x192): AP 0.736, AR 0.791 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res152_8xb32-210e_coco-256x192.py'
