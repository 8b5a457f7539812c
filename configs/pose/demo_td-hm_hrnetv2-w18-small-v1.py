# The demo pose estimator with the V2 representation (every branch resized to stride 4 and
# concatenated, 240 channels) in place of V1, the same 1x1 heatmap head on it; for the main
# job's --ablation (V1 against V2).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_td-hm_hrnetv1-w18-small-v1.py'
model = dict(
    backbone=dict(representation='v2'),
    head=dict(in_channels=240))
