"""Gather a GPU run (tools/gpu_check.sh) into one JSON and one Markdown report, with the targets.

    python tools/gpu_report.py WORK_DIR OUT_DIR

WORK_DIR holds ``tests.xml`` (pytest's JUnit report of the CUDA tests) and ``bench/<case>.json``
(tools/benchmark.py results); OUT_DIR gets ``gpu_results.json`` and ``gpu_results.md``.
"""
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hrnet_mm.bench import format_table  # noqa: E402

DET_OURS = ['hrnet_mm HRNetV2p', 'hrnet_mm HRNetV2p [channels_last]',
            'hrnet_mm HRNetV2p [channels_last, pad 8]',
            'hrnet_mm HRNetV2p [channels_last, streams]',
            'hrnet_mm HRNetV2p [channels_last, pad 8, streams]']
#: The issue's GPU targets: case file, the reference row, the rows that may meet it
#: (the best counts), the target ratio, and the strongest stock variant to report beside it.
EAGER = [
    dict(case='det_w18_fp32', what='Faster R-CNN HRNetV2p-W18 training step, 2x800x1216, fp32',
         reference='mmdet HRNetV2p (HRNet + HRFPN)', ours=DET_OURS,
         target=1.5, strongest='mmdet HRNetV2p (HRNet + HRFPN) [channels_last]',
         stretch='mmdet R-50-FPN', key='train_img_s'),
    dict(case='det_w18_bf16', what='Faster R-CNN HRNetV2p-W18 training step, 2x800x1216, bf16',
         reference='mmdet HRNetV2p (HRNet + HRFPN)', ours=DET_OURS,
         target=1.5, strongest='mmdet HRNetV2p (HRNet + HRFPN) [channels_last]',
         stretch='mmdet R-50-FPN', key='train_img_s'),
    dict(case='seg_w48_bf16', what='HRNetV2-W48 segmentation training step, 8x512x1024, bf16',
         reference='mmseg', ours=['hrnet_mm (mmseg config)', 'hrnet_mm fast [channels_last]',
                                  'hrnet_mm fast [channels_last, streams]'],
         target=1.4, strongest='mmseg fast [channels_last]', key='train_img_s'),
    dict(case='infer_w48', what='HRNetV2-W48 inference, 1x1024x2048 (stock fp32 eager)',
         reference='mmseg', ours=['hrnet_mm (mmseg config)',
                                  'hrnet_mm fast [fold, channels_last] bf16',
                                  'hrnet_mm fast [fold, channels_last, streams] bf16'],
         target=2.0, strongest='mmseg fast [fold, channels_last] bf16', key='infer_img_s'),
    dict(case='pose_w32_fp32', what='HRNet-W32 pose training step, 64x256x192, fp32',
         reference='mmpose', ours=['hrnet_mm (mmpose config)', 'hrnet_mm fast [channels_last]',
                                   'hrnet_mm fast [channels_last, streams]'],
         target=1.3, strongest='mmpose fast [channels_last]', key='train_img_s'),
    dict(case='pose_w32_bf16', what='HRNet-W32 pose training step, 64x256x192, bf16',
         reference='mmpose', ours=['hrnet_mm (mmpose config)', 'hrnet_mm fast [channels_last]',
                                   'hrnet_mm fast [channels_last, streams]'],
         target=1.3, strongest='mmpose fast [channels_last]', key='train_img_s'),
]
#: The ways a case's fast rows run beyond eager: name (in the rows and the case) -> the words
#: the report adds to the case's description.
RUNS = {'graphs': 'as CUDA graphs of the eager model',
        'cudagraphs': 'compiled as CUDA graphs',
        'compile': 'compiled',
        'regions': 'compiled (hrnet_mm region by region, its branches on streams; the stock '
                   'model whole) as CUDA graphs'}


def run_as(case: str, run: str, name: Optional[str] = None) -> dict:
    """The target of eager ``case`` with its fast rows (``[...]`` in their names) run as
    ``run`` (a key of :data:`RUNS`): case ``name``, by default ``<case less its
    precision>_<run>``, rows named ``[..., <run>]`` (the eager rows still count where the run
    has them); ``regions``: rows named ``[..., regions(, streams), graphs]``."""
    t = next(t for t in EAGER if t['case'] == case)

    def named(row: str) -> str:
        if '[' not in row:
            return row
        start, end = row.index('[') + 1, row.index(']')
        paths = row[start:end].split(', ')
        if run == 'regions':  # named as tools/benchmark.py names them: regions before streams
            paths.insert(paths.index('streams') if 'streams' in paths else len(paths),
                         'regions')
        paths.append('graphs' if run == 'regions' else run)
        return row[:start] + ', '.join(paths) + row[end:]

    prefix = re.sub(r'_(fp32|bf16|fp16)$', '', case)
    return dict(t, case=name or f'{prefix}_{run}', what=f"{t['what']}, {RUNS[run]}",
                ours=t['ours'] + [named(n) for n in t['ours'] if '[' in n],
                strongest=named(t['strongest']))


TARGETS = EAGER + [run_as('seg_w48_bf16', 'graphs'), run_as('infer_w48', 'graphs'),
                   run_as('pose_w32_bf16', 'graphs'), run_as('det_w18_bf16', 'graphs'),
                   run_as('det_w18_bf16', 'cudagraphs'), run_as('seg_w48_bf16', 'cudagraphs'),
                   run_as('infer_w48', 'compile'), run_as('pose_w32_bf16', 'cudagraphs'),
                   run_as('pose_w32_fp32', 'graphs', name='pose_w32_fp32_graphs'),
                   run_as('pose_w32_bf16', 'regions'), run_as('seg_w48_bf16', 'regions'),
                   run_as('infer_w48', 'regions')]


def read_tests(path: str) -> dict:
    """Counts, failures (first line of each message) and what each test measured."""
    if not os.path.exists(path):
        return dict(ran=False)
    cases = []
    for tc in ET.parse(path).iter('testcase'):
        failure = tc.find('failure') if tc.find('failure') is not None else tc.find('error')
        status = ('failed' if failure is not None else
                  'skipped' if tc.find('skipped') is not None else 'passed')
        props = {p.get('name'): p.get('value') for p in tc.iter('property')}
        measured = json.loads(props['measured']) if 'measured' in props else None
        message = (failure.get('message') or '').splitlines()[0][:300] if failure is not None else ''
        cases.append(dict(name=tc.get('name'), status=status, seconds=float(tc.get('time', 0)),
                          measured=measured, message=message))
    counts = {s: sum(c['status'] == s for c in cases) for s in ('passed', 'failed', 'skipped')}
    out = dict(ran=True, counts=counts, cases=cases)
    cut = os.path.join(os.path.dirname(path), 'tests_cut')  # written by gpu_check.sh
    if os.path.exists(cut):
        with open(cut) as f:
            out['cut_at_s'] = int(f.read().strip() or 0)
    return out


def _rate(rows: Dict[str, dict], name: str, key: str) -> Optional[float]:
    row = rows.get(name)
    return row.get(key) if row else None


def check_target(t: dict, results: dict) -> dict:
    rows = {r['name']: r for r in results['rows']}
    ref = _rate(rows, t['reference'], t['key'])
    candidates = {n: _rate(rows, n, t['key']) for n in t['ours'] if _rate(rows, n, t['key'])}
    if not ref or not candidates:
        return dict(case=t['case'], what=t['what'], status='not measured')
    best = max(candidates, key=candidates.get)
    out = dict(case=t['case'], what=t['what'], best=best, ratio=candidates[best] / ref,
               target=t['target'])
    out['status'] = 'met' if out['ratio'] >= t['target'] else \
        f"missed by {t['target'] / out['ratio']:.2f}x"
    if results.get('partial'):  # cut at its time limit: fewer repeats, maybe fewer rows
        out['status'] += f" (cut short at \"{results['partial']}\")"
    strongest = _rate(rows, t['strongest'], t['key'])
    if strongest:
        out['vs_strongest_stock'] = candidates[best] / strongest
    if t.get('stretch') and _rate(rows, t['stretch'], t['key']):
        out['vs_stretch'] = candidates[best] / _rate(rows, t['stretch'], t['key'])
    return out


def report(work: str) -> dict:
    bench = {}
    for path in sorted(glob.glob(os.path.join(work, 'bench', '*.json'))):
        with open(path) as f:
            bench[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
    targets = [check_target(t, bench[t['case']]) if t['case'] in bench else
               dict(case=t['case'], what=t['what'], status='not measured') for t in TARGETS]
    cases = {}
    if os.path.exists(os.path.join(work, 'cases.tsv')):  # written by gpu_check.sh
        with open(os.path.join(work, 'cases.tsv')) as f:
            cases = dict(line.rstrip('\n').split('\t', 1) for line in f if '\t' in line)
    for name, results in bench.items():  # a case cut short keeps the rounds it finished
        if name in cases and results.get('partial'):
            cases[name] += f"; results kept up to \"{results['partial']}\""
    return dict(tests=read_tests(os.path.join(work, 'tests.xml')), targets=targets,
                cases=cases, bench=bench)


def to_markdown(rep: dict, summary: bool = False) -> str:
    """The report; ``summary``: the tests and the targets only (what the console shows)."""
    lines: List[str] = ['# GPU run', '']
    tests = rep['tests']
    if tests.get('ran'):
        c = tests['counts']
        lines += [f"CUDA tests: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['skipped']} skipped", '']
        if tests.get('cut_at_s'):
            lines += [f"(cut at the time limit, {tests['cut_at_s']} s: the tests not finished "
                      'by then are not listed)', '']
        for case in tests['cases']:
            if case['status'] == 'failed':
                lines.append(f"- FAILED {case['name']}: {case['message']}")
        measured = [c for c in tests['cases'] if c['measured']]
        if measured:
            lines += ['', '| test | measured |', '|---|---|']
            lines += [f"| {c['name']} | {json.dumps(c['measured'])} |" for c in measured]
    else:
        lines.append('CUDA tests: not run')
    lines += ['', '## Targets', '', '| case | best hrnet_mm row | x stock | target | status | '
              'x strongest stock variant | x R-50-FPN |', '|---|---|---|---|---|---|---|']
    for t in rep['targets']:
        def fmt(v):
            return '' if v is None else f'{v:.2f}x'
        lines.append(f"| {t['what']} | {t.get('best', '')} | {fmt(t.get('ratio'))} | "
                     f"{fmt(t.get('target'))} | {t['status']} | "
                     f"{fmt(t.get('vs_strongest_stock'))} | {fmt(t.get('vs_stretch'))} |")
    if rep.get('cases'):
        lines += ['', '| benchmark case | what became of it |', '|---|---|']
        lines += [f"| {name} | {what.replace('|', '/')} |" for name, what in rep['cases'].items()]
    for case, results in ({} if summary else rep['bench']).items():
        lines += ['', f'## {case}', '']
        if results.get('model') == 'conv_widths':
            lines.append('ms per 3x3 conv + BN + ReLU step (forward + backward): ' +
                         ', '.join(f'{w}: {ms:.3f}' for w, ms in results['ms'].items()))
        else:
            lines.append(format_table(results))
    return '\n'.join(lines) + '\n'


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work, out = argv
    rep = report(work)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'gpu_results.json'), 'w') as f:
        json.dump(rep, f, indent=2)
    with open(os.path.join(out, 'gpu_results.md'), 'w') as f:
        f.write(to_markdown(rep))
    print(to_markdown(rep, summary=True))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
