"""tools/gpu_report.py: the targets are judged from the right rows (the GPU run is not rerun)."""
import json

import pytest
from helpers import tool_module

gpu_report = tool_module('gpu_report')

STOCK = 'mmdet HRNetV2p (HRNet + HRFPN)'


def det_results(rates):
    rows = [dict(name=name, precision='fp32', infer_img_s=None, infer_peak_mib=None,
                 train_img_s=rate, train_peak_mib=None, max_abs_diff=None, first_call_s={},
                 profile={}, notes=[]) for name, rate in rates.items()]
    return dict(arch='Faster R-CNN w18', representation='v2p', batch=2, size=[800, 1216],
                precision='fp32', device='NVIDIA H100', baseline=STOCK, torch='2.11',
                threads=16, date='2026-11-26', rows=rows)


def test_the_best_hrnet_mm_row_counts_the_padded_one_included():
    results = det_results({STOCK: 10.0, 'hrnet_mm HRNetV2p': 11.0,
                           'mmdet R-50-FPN': 20.0, f'{STOCK} [channels_last]': 12.0,
                           'hrnet_mm HRNetV2p [channels_last]': 13.0,
                           'hrnet_mm HRNetV2p [channels_last, pad 8]': 16.0})
    target = next(t for t in gpu_report.TARGETS if t['case'] == 'det_w18_fp32')
    got = gpu_report.check_target(target, results)
    assert got['best'] == 'hrnet_mm HRNetV2p [channels_last, pad 8]'
    assert got['ratio'] == pytest.approx(1.6) and got['status'] == 'met'
    assert got['vs_strongest_stock'] == pytest.approx(16 / 12)
    assert got['vs_stretch'] == pytest.approx(0.8)
    slower = det_results({STOCK: 10.0, 'hrnet_mm HRNetV2p': 12.0})
    got = gpu_report.check_target(target, slower)
    assert got['best'] == 'hrnet_mm HRNetV2p' and got['status'] == 'missed by 1.25x'
    assert 'vs_strongest_stock' not in got
    assert gpu_report.check_target(target, det_results({STOCK: 10.0}))['status'] == 'not measured'


def test_the_regions_targets_read_the_rows_the_benchmark_names():
    """tools/benchmark.py names a row's paths in order: its own, then streams, then the
    runner (``[channels_last, regions, streams, graphs]``); the stock model's row has the
    same paths but streams."""
    target = next(t for t in gpu_report.TARGETS if t['case'] == 'pose_w32_regions')
    assert target['strongest'] == 'mmpose fast [channels_last, regions, graphs]'
    assert target['ours'][-2:] == ['hrnet_mm fast [channels_last, regions, graphs]',
                                   'hrnet_mm fast [channels_last, regions, streams, graphs]']
    infer = next(t for t in gpu_report.TARGETS if t['case'] == 'infer_w48_regions')
    assert infer['ours'][-1] == 'hrnet_mm fast [fold, channels_last, regions, streams, graphs] bf16'
    rows = {'mmpose': 100.0, 'mmpose fast [channels_last, regions, graphs]': 300.0,
            'hrnet_mm fast [channels_last, regions, streams, graphs]': 390.0}
    got = gpu_report.check_target(target, dict(det_results(rows), baseline='mmpose'))
    assert got['best'] == 'hrnet_mm fast [channels_last, regions, streams, graphs]'
    assert got['vs_strongest_stock'] == pytest.approx(1.3) and got['status'] == 'met'


def test_report_from_a_run_folder(tmp_path):
    (tmp_path / 'bench').mkdir()
    results = det_results({STOCK: 10.0, 'hrnet_mm HRNetV2p [channels_last, pad 8]': 14.0})
    (tmp_path / 'bench' / 'det_w18_fp32.json').write_text(json.dumps(results))
    rep = gpu_report.report(str(tmp_path))
    assert rep['tests'] == dict(ran=False)
    det = next(t for t in rep['targets'] if t['case'] == 'det_w18_fp32')
    assert det['status'] == 'missed by 1.07x'
    text = gpu_report.to_markdown(rep)
    assert ('| Faster R-CNN HRNetV2p-W18 training step, 2x800x1216, fp32 | hrnet_mm HRNetV2p '
            '[channels_last, pad 8] | 1.40x | 1.50x | missed by 1.07x |  |  |') in text
    assert 'CUDA tests: not run' in text and '## det_w18_fp32' in text


def test_tests_cut_at_the_time_limit_are_said_to_be(tmp_path):
    (tmp_path / 'tests.xml').write_text(
        '<testsuites><testsuite><testcase classname="t" name="test_a" time="1.0"/>'
        '<testcase classname="t" name="test_b" time="2.0"><failure message="boom\nmore"/>'
        '</testcase></testsuite></testsuites>')
    (tmp_path / 'tests_cut').write_text('87\n')
    rep = gpu_report.report(str(tmp_path))
    assert rep['tests']['counts'] == dict(passed=1, failed=1, skipped=0)
    assert rep['tests']['cut_at_s'] == 87
    text = gpu_report.to_markdown(rep, summary=True)
    assert 'CUDA tests: 1 passed, 1 failed, 0 skipped' in text
    assert '(cut at the time limit, 87 s: the tests not finished by then are not listed)' in text
    assert '- FAILED test_b: boom' in text


def test_what_became_of_each_case_is_reported(tmp_path):
    (tmp_path / 'cases.tsv').write_text(
        'det_w18_fp32\tmeasured in 41 s (estimate 50 s)\n'
        'det_w18_cudagraphs\texit 124 after 190 s; last progress: [benchmark  180.2s] warm-up '
        '1/3: hrnet_mm HRNetV2p [channels_last, cudagraphs]; last line: a | b\n'
        'pose_w32_cudagraphs\tskipped: 12 s left, needs about 150 s\n')
    rep = gpu_report.report(str(tmp_path))
    assert list(rep['cases']) == ['det_w18_fp32', 'det_w18_cudagraphs', 'pose_w32_cudagraphs']
    text = gpu_report.to_markdown(rep, summary=True)
    assert '| det_w18_fp32 | measured in 41 s (estimate 50 s) |' in text
    assert ('| det_w18_cudagraphs | exit 124 after 190 s; last progress: [benchmark  180.2s] '
            'warm-up 1/3: hrnet_mm HRNetV2p [channels_last, cudagraphs]; last line: a / b |'
            ) in text
    assert '| pose_w32_cudagraphs | skipped: 12 s left, needs about 150 s |' in text


def test_a_case_cut_at_its_time_limit_reports_what_it_kept(tmp_path):
    """tools/benchmark.py saves after each round: a cut case still counts, marked as such."""
    (tmp_path / 'bench').mkdir()
    results = det_results({STOCK: 10.0, 'hrnet_mm HRNetV2p [channels_last]': 16.0})
    results['partial'] = 'train: 4 of 10 repeats'
    (tmp_path / 'bench' / 'det_w18_bf16.json').write_text(json.dumps(results))
    (tmp_path / 'cases.tsv').write_text(
        'det_w18_bf16\texit 124 after 290 s; last progress: [benchmark  281.0s] train memory: '
        'x; last line: y\n')
    rep = gpu_report.report(str(tmp_path))
    det = next(t for t in rep['targets'] if t['case'] == 'det_w18_bf16')
    assert det['status'] == 'met (cut short at "train: 4 of 10 repeats")'
    assert det['ratio'] == pytest.approx(1.6)
    assert rep['cases']['det_w18_bf16'].endswith(
        'last line: y; results kept up to "train: 4 of 10 repeats"')
    text = gpu_report.to_markdown(rep)
    assert 'Cut short: measured up to "train: 4 of 10 repeats"' in text


def test_the_runs_kept_in_docs_still_make_their_report(tmp_path):
    """The JSON of the earlier GPU runs (docs/gpu_runs) has profiles without the kernel time by
    kind: their tables come out as before, without the kinds table."""
    from helpers import ROOT
    from hrnet_mm.bench import format_table
    path = ROOT / 'docs/gpu_runs/2026-11-28-h100/call2-gpu_results.json'
    rep = json.loads(path.read_text())
    profiled = [r for results in rep['bench'].values() for r in results.get('rows', ())
                if r.get('profile')]
    assert profiled and not any('by_kind' in p for r in profiled for p in r['profile'].values())
    text = gpu_report.to_markdown(rep)
    assert '| model | mode | step ms | kernel ms | launches | idle % |' in text
    assert 'Kernel ms by kind' not in text
    results = next(iter(rep['bench'].values()))
    row = next(r for r in results['rows'] if r.get('profile'))
    row['profile'][next(iter(row['profile']))].update(
        by_kind={'conv / matmul': 30.0, 'batch norm': 10.0}, top_kernels=[])
    assert '| conv / matmul | batch norm |' in format_table(results)
    kinds = format_table(results).split('Kernel ms by kind')[1]
    assert f"| {row['name']} | " in kinds and '| 30.0 (75%) | 10.0 (25%) |' in kinds
