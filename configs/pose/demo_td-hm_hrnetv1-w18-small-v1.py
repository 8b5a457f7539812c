# The demo pose estimator: HRNet-W18-Small-v1 (the V1 representation) with a 1x1 heatmap head
# on the embedded dataset; the R-18 baseline with the backbone (and head) swapped.
# Published result: none (a demo on the embedded dataset).
_base_ = './demo_td-hm_res18.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='HRNetV2', arch='w18_small_v1', representation='v1'),
    head=dict(in_channels=16, deconv_out_channels=None, deconv_kernel_sizes=None))
