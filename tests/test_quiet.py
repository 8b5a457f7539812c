"""Quiet output: third-party prints and warnings into log files, one-line init reports."""
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from hrnet_mm.engine.quiet import build_runner, capture_into_file, moved_line, prints_into_log

ROOT = Path(__file__).resolve().parents[1]


def _third_party_warning(message):
    """A warning whose source file is outside hrnet_mm, as a library's would be."""
    code = compile(f'warnings.warn({message!r}, UserWarning)', '/site-packages/lib/x.py', 'exec')
    exec(code, {'warnings': warnings})


def test_capture_into_file_takes_prints_warnings_and_new_loggers(tmp_path, capsys):
    from mmengine.logging import MMLogger
    log = tmp_path / 'run.log'
    with capture_into_file(str(log)) as sink:
        print('loading annotations into memory...')
        _third_party_warning('a library notice')
        logger = MMLogger.get_instance('quiet_test_logger', log_level='INFO')
        logger.info('a runner line')
    text = log.read_text()
    assert 'loading annotations into memory...' in text
    assert 'a library notice' in text and 'a runner line' in text
    assert sink.warnings == 1
    out = capsys.readouterr()
    assert 'loading annotations' not in out.out + out.err
    # the logger created inside no longer writes to the closed file
    assert not [h for h in logger.handlers if getattr(h, 'stream', None) is sink]
    logger.info('after the run')  # would raise "I/O operation on closed file" through logging
    assert 'after the run' not in log.read_text()


def test_own_warnings_stay_on_the_console(tmp_path):
    from hrnet_mm.engine import quiet
    own = compile("warnings.warn('check your data', UserWarning)",
                  str(Path(quiet.__file__)), 'exec')
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        with capture_into_file(str(tmp_path / 'x.log')) as sink:
            exec(own, {'warnings': warnings})
    assert sink.warnings == 0 and 'check your data' not in (tmp_path / 'x.log').read_text()
    assert [str(w.message) for w in seen] == ['check your data']


def test_prints_into_log_uses_the_loggers_file_and_verbose_keeps_the_console(tmp_path, capsys):
    logger = logging.getLogger('hrnet_mm_quiet_file')
    handler = logging.FileHandler(tmp_path / 'runner.log')
    logger.addHandler(handler)
    try:
        with prints_into_log(logger) as sink:
            print(' Average Precision  (AP) @[ IoU=0.50:0.95 ] = 0.5')
            _third_party_warning('deprecated soon')
        sink.report()
        with prints_into_log(logger, verbose=True):
            print('shown')
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / 'runner.log').read_text()
    assert 'Average Precision' in text and 'deprecated soon' in text
    out = capsys.readouterr()
    assert 'Average Precision' not in out.out and out.out == 'shown\n'
    assert out.err == (f'evaluation output and 1 third-party warning: {tmp_path}/runner.log '
                       '(--verbose prints them)\n')


def test_torch_compile_notices_go_to_the_log_file_and_errors_stay(tmp_path, capsys):
    """torch.compile logs "Profiler record function ... will be ignored" through torch's own
    loggers (each with a console handler that does not propagate) while a compiled run trains:
    into the log file and the count; an error of torch's stays on the console."""
    import torch._dynamo  # noqa: F401 - sets up torch's loggers, as compiling does
    from torch._logging._internal import warning_once
    logger = logging.getLogger('hrnet_mm_quiet_torch')
    handler = logging.FileHandler(tmp_path / 'runner.log')
    logger.addHandler(handler)
    dynamo = logging.getLogger('torch._dynamo.variables.ctx_manager')
    try:
        with prints_into_log(logger) as sink:
            warning_once(dynamo, 'Profiler record function %s will be ignored', 'f')
            logging.getLogger('torch._inductor').error('an inductor error')
            # torch's structured trace (debug records, a file when TORCH_TRACE is set)
            logging.getLogger('torch.__trace').debug('a trace record')
        dynamo.warning('after the run')
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / 'runner.log').read_text()
    assert 'Profiler record function f will be ignored' in text and sink.warnings == 1
    err = capsys.readouterr().err
    assert 'Profiler record function' not in err
    assert 'an inductor error' in err and 'an inductor error' not in text
    assert 'after the run' in err  # the filters are gone afterwards


def test_library_deprecation_notices_go_to_the_log_file_only(tmp_path):
    """mmpretrain's datasets make mmengine log two "will be deprecated" WARNING lines on every
    run: into the log file and the count, off the console; other lines stay on the console."""
    import io

    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('hrnet_mm_quiet_notices', log_file=str(tmp_path / 'r.log'))
    console = next(h for h in logger.handlers if not isinstance(h, logging.FileHandler))
    stream = io.StringIO()
    console.setStream(stream)
    with prints_into_log(logger) as sink:
        logger.warning('"FileClient" will be deprecated in future. Please use io functions')
        logger.warning('"HardDiskBackend" is the alias of "LocalBackend" and the former will be '
                       'deprecated in future.')
        logger.warning('the checkpoint has no key "meta"')
        # mmengine's own words when mmseg's IoUMetric is built (every segmentation run)
        logger.warning('The prefix is not set in metric class IoUMetric.')
    logger.warning('"FileClient" will be deprecated in future.')  # outside: as before
    for h in logger.handlers:
        h.flush()
    shown = stream.getvalue()
    assert 'FileClient' in shown and shown.count('FileClient') == 1  # only the one outside
    assert 'HardDiskBackend' not in shown and 'the checkpoint has no key "meta"' in shown
    assert 'IoUMetric' not in shown
    assert sink.warnings == 3
    logged = (tmp_path / 'r.log').read_text()
    assert 'HardDiskBackend' in logged and logged.count('FileClient') == 2
    assert 'The prefix is not set in metric class IoUMetric.' in logged


def test_the_line_naming_the_log_file_counts_warnings_in_words():
    assert moved_line('evaluation output', 0, 'w/r.log') == \
        'evaluation output: w/r.log (--verbose prints them)'
    assert moved_line('evaluation output', 1, 'w/r.log') == \
        'evaluation output and 1 third-party warning: w/r.log (--verbose prints them)'
    assert moved_line('set-up (environment, config, hook order)', 2, 'w/r.log') == \
        'set-up (environment, config, hook order) and 2 third-party warnings: w/r.log ' \
        '(--verbose prints them)'


def test_pretrained_loading_outside_a_runner_prints_one_line(tmp_path):
    """mmengine's init report printed one console entry per parameter (~3,500 lines for W32,
    each saying the value did not change, although the weights were then loaded)."""
    script = f"""
import torch
from hrnet_mm import HRNetV2
m = HRNetV2(arch='w18_small_v1', representation='v1')
torch.save({{'state_dict': {{'backbone.' + k: v for k, v in m.state_dict().items()}}}}, r'{tmp_path}/w.pth')
HRNetV2(arch='w18_small_v1', representation='v1',
        init_cfg=dict(type='Pretrained', checkpoint=r'{tmp_path}/w.pth')).init_weights()
HRNetV2(arch='w18_small_v1').init_weights()
"""
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 2, lines[:10]
    assert lines[0].endswith(f'loaded {tmp_path}/w.pth: layout hrnet_mm; all keys matched')
    assert 'HRNetV2 initialised: ' in lines[1] and 'Kaiming (Conv2d)' in lines[1]


def test_init_report_still_goes_to_a_runners_log_file(tmp_path):
    from mmengine.logging import MMLogger

    from hrnet_mm import HRNetV2
    logger = MMLogger.get_instance('hrnet_mm_init_report', log_file=str(tmp_path / 'run.log'))
    HRNetV2(arch='w18_small_v1').init_weights()
    for h in logger.handlers:
        h.flush()
    text = (tmp_path / 'run.log').read_text()
    assert 'Name of parameter - Initialization information' in text
    assert text.count('KaimingInit') > 50


@pytest.mark.parametrize('module', ['mmengine.utils', 'mmdet'])
def test_no_pkg_resources_notice_after_importing_hrnet_mm(module):
    code = ('import hrnet_mm, importlib, mmengine.utils.package_utils as p; '
            f'importlib.import_module({module!r}); p.is_installed("mmdet")')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'pkg_resources' not in proc.stderr


def _seg_demo_cfg(work_dir):
    from hrnet_mm.engine.run_config import load_run_config
    return load_run_config(str(ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'), None,
                           'none', str(work_dir))


@pytest.mark.filterwarnings('default:``build_loss``:UserWarning')  # mmseg's two notices,
@pytest.mark.filterwarnings('default:Default ``avg_non_ignore``:UserWarning')  # hidden elsewhere
def test_build_runner_keeps_the_set_up_dump_off_the_console(tmp_path, capsys):
    """mmengine printed ~480 lines (environment, whole config, hook order) and mmseg two
    deprecation warnings on the console of every tools/train.py and tools/test.py run."""
    runner = build_runner(_seg_demo_cfg(tmp_path / 'quiet'))
    runner.logger.warning('a warning after the set-up')  # the console handler works again
    runner.logger.error('an error')
    out = capsys.readouterr()
    log = runner.logger.handlers[-1].baseFilename
    line = out.err.splitlines()[0]
    count = re.fullmatch(r'set-up \(environment, config, hook order\) and (\d+) third-party '
                         rf'warnings: {re.escape(log)} \(--verbose prints them\)', line)
    assert count and int(count[1]) >= 2, line  # mmseg's two (more if the process saw others)
    assert 'System environment' not in out.out + out.err and 'Config:' not in out.out
    assert 'a warning after the set-up' in out.out and 'an error' in out.out
    text = Path(log).read_text()
    for part in ('System environment:', 'Config:', "type='HRNetV2'",
                 'Hooks will be executed in the following order', 'SafeCheckpointHook',
                 'UserWarning: ``build_loss`` would be deprecated soon'):
        assert part in text, part

    with warnings.catch_warnings(record=True):  # --verbose leaves mmseg's two to Python
        build_runner(_seg_demo_cfg(tmp_path / 'verbose'), verbose=True)
    out = capsys.readouterr()
    assert 'System environment:' in out.out and 'Hooks will be executed' in out.out
    assert 'set-up (' not in out.err


def test_set_up_console_passes_warnings_and_prints_and_holds_info_lines():
    import io

    from hrnet_mm.engine.quiet import _SetupOffConsole
    real = io.StringIO()
    console = _SetupOffConsole(real)
    logger = logging.getLogger('hrnet_mm_quiet_setup')
    handler = logging.StreamHandler(console)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info('environment dump')
        logger.warning('check this')
        print('a plain print', file=console)
    finally:
        logger.removeHandler(handler)
    assert real.getvalue() == 'check this\na plain print\n'
    assert console.held == ['environment dump\n']


def test_build_runner_that_fails_still_shows_the_warnings_raised_on_the_way(monkeypatch):
    from mmengine.runner import Runner

    def failing(cfg):
        _third_party_warning('this option is going away')
        raise KeyError('NoSuchModel is not in the model registry')

    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(failing))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        with pytest.raises(KeyError, match='NoSuchModel'):
            build_runner(dict())
    assert [str(w.message) for w in seen] == ['this option is going away']
    from hrnet_mm.engine.quiet import _SetupOffConsole
    assert not isinstance(sys.stdout, _SetupOffConsole)  # the console is back
