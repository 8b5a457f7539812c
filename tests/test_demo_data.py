"""The embedded dataset generated where the demo configs read it, when it is not there yet:
on a fresh clone ``tools/train.py configs/seg/demo_...`` works as the README shows it."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mmengine.config import Config

from hrnet_mm.data import DEMO_ROOT, apply_data_root, ensure_generated, prepare_demo_data

ROOT = Path(__file__).resolve().parents[1]
SEG = ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'
# what the generated dataset holds (as many files as generate() writes for 48 + 16 images)
LAST = ('annotations/person_keypoints_val.json', 'cls/val.txt', 'images/val/val_0015.jpg',
        'masks/train/train_0047.png')
GENERATE = ('import sys; from hrnet_mm.data import ensure_generated; '
            'print(ensure_generated(sys.argv[1]).get("val", {}).get("images", 0))')


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def _complete(root: Path) -> bool:
    return all((root / f).is_file() for f in LAST)


def test_generated_once_and_never_partial(tmp_path):
    root = tmp_path / 'data/demo'
    counts = ensure_generated(str(root))
    assert counts['train']['images'] == 48 and counts['val']['images'] == 16
    assert _complete(root) and os.listdir(tmp_path / 'data') == ['demo']
    digest = _digest(root)
    assert ensure_generated(str(root)) == {}  # there: left as it is
    assert _digest(root) == digest


def test_an_incomplete_copy_is_replaced(tmp_path):
    """A copy from before the classification split (no cls/), or one an older version wrote
    in place and was killed while writing."""
    root = tmp_path / 'data/demo'
    ensure_generated(str(root))
    digest = _digest(root)
    (root / 'cls/val.txt').unlink()
    (root / 'stale.txt').write_text('from an older copy')
    assert ensure_generated(str(root))['val']['images'] == 16
    assert _digest(root) == digest and os.listdir(tmp_path / 'data') == ['demo']


def test_a_run_killed_while_generating_leaves_no_dataset_and_its_leftovers_go(tmp_path):
    root = tmp_path / 'data/demo'
    proc = subprocess.Popen([sys.executable, '-c', GENERATE, str(root)])
    partial = tmp_path / f'data/demo.partial-{proc.pid}'
    deadline = time.time() + 60
    while not (partial / 'images/train').is_dir() or \
            len(os.listdir(partial / 'images/train')) < 5:  # writing its images
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not root.exists() and partial.is_dir()  # nothing half-written where runs read
    assert ensure_generated(str(root))['val']['images'] == 16
    assert _complete(root) and os.listdir(tmp_path / 'data') == ['demo']  # leftover removed


def test_processes_starting_together_all_find_one_complete_dataset(tmp_path):
    """tools/dist_train.sh starts every process of a distributed run at once."""
    root = tmp_path / 'data/demo'
    procs = [subprocess.Popen([sys.executable, '-c', GENERATE, str(root)], text=True,
                              stdout=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sorted(int(o) for o in outs)[-1] == 16  # at least one wrote it
    assert _complete(root) and os.listdir(tmp_path / 'data') == ['demo']
    reference = tmp_path / 'ref'
    ensure_generated(str(reference))
    assert _digest(root) == _digest(reference)  # the same data whoever wrote it


def test_prepare_generates_only_where_a_config_reads_the_demo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for split in ('train', 'val'):  # a folder of the user's, in mmseg's layout
        (tmp_path / f'mine/img_dir/{split}').mkdir(parents=True)
        (tmp_path / f'mine/ann_dir/{split}').mkdir(parents=True)
    elsewhere = Config.fromfile(str(SEG))
    apply_data_root(elsewhere, 'mine')  # --data-root: the user's own data
    assert prepare_demo_data(elsewhere) == [] and not (tmp_path / 'data').exists()
    lines = prepare_demo_data(Config.fromfile(str(SEG)))
    assert len(lines) == 1 and lines[0].startswith(
        f'{DEMO_ROOT}: generated the embedded dataset (48 train and 16 val '
        'images, ')
    assert _complete(tmp_path / DEMO_ROOT)
    assert prepare_demo_data(Config.fromfile(str(SEG))) == []


def test_train_tool_on_a_fresh_clone_generates_the_demo_data(tmp_path):
    """The README's first training command, in a folder without data/."""
    res = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), str(SEG), '--work-dir', 'work',
         '--cfg-options', 'train_cfg.max_iters=1', 'train_cfg.val_interval=100'],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines()[0].startswith(
        'data/hrnet_mm_demo: generated the embedded dataset (48 train and 16 '
        'val images, ')
    assert (tmp_path / 'work/iter_1.pth').is_file() and _complete(tmp_path / DEMO_ROOT)
    # the seg run's console: mmseg's IoUMetric notice is in the log file only
    assert 'The prefix is not set' not in res.stdout + res.stderr
