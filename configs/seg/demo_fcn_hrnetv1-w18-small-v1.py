# The demo segmentor with the V1 representation (the stride-4 branch alone, 16 channels) in
# place of V2, the same 1x1 head on it; for the main job's --ablation (V1 against V2).
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_fcn_hrnetv2-w18-small-v1.py'
model = dict(
    backbone=dict(representation='v1'),
    decode_head=dict(in_channels=16, channels=16))
