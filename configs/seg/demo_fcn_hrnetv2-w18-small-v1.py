# The demo segmentor: HRNetV2-W18-Small-v1 with the paper's head on the embedded dataset; the
# R-18 baseline with the backbone (and the head's input width) swapped.
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_fcn_r18-d8.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18_small_v1',
        representation='v2',
        upsample_mode='bilinear'),
    decode_head=dict(in_channels=240, channels=240, in_index=0, kernel_size=1, num_convs=1,
                     concat_input=False))
