"""`tiss train --distributed mpi` under a real `mpiexec`: same model as one process, faults, resume.

The runs are tiny (a 1-layer d=16 model, a few steps) so each `mpiexec` takes a second or two.
Tolerance: ranks sum their float32 gradients in another order than one process does, so after 6
AdamW steps at lr 1e-2 parameters differ by about 1e-5 (measured: at most 1.3e-5 for 1-4 ranks);
the tests allow 1e-4, a hundredth of one step's update, while a mis-weighted or dropped share moves
parameters by a whole update (~1e-2). Two ranks of one thread each add exactly what one process on
two threads adds (g0 + g1 over the same shards), and one rank is one process, so those pairs must
agree bit for bit.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from lm import checkpoint
from lm.distributed import INSTALL_HINT, DistributedError, MPIGroup
from lm.train import train

TOL = 1e-4
TINY = dict(steps=6, batch_size=5, seq_len=16, d_model=16, n_layers=1, n_heads=2, vocab_size=280,
            eval_every=3, save_every=3, lr=1e-2, warmup=2, seed=3)
CLI = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _find_mpiexec() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    # The launcher beside this interpreter first (the mpich wheel puts it there), then PATH.
    for candidate in (Path(sys.executable).parent / "mpiexec", shutil.which("mpiexec")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


MPIEXEC = _find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason=f"mpi4py or mpiexec is missing ({INSTALL_HINT})")
# One BLAS thread per rank; Open MPI's mpirun (if that is the launcher found) refuses root and more
# ranks than cores unless told; MPICH ignores these.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
       "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def _flags(options: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def _mpi_train(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [MPIEXEC, "-n", str(n), *CLI, "train", "--distributed", "mpi", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def _params(run):
    model, _ = checkpoint.load(run)
    return {k: v.copy() for k, v in model.params.items()}


def _history(run):
    keep = ("step", "loss", "lr", "grad_norm", "val_loss", "val_ppl")  # not the timings
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k in keep} for line in lines]


def _assert_same_model(got, expected, atol=TOL):
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=atol, err_msg=name)


def _assert_same_history(got, expected):
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]
    for g, e in zip(got, expected):
        assert g["step"] == e["step"]
        for key in set(g) - {"step"}:
            assert g[key] == pytest.approx(e[key], rel=1e-4, abs=1e-4), (g["step"], key)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(5):
        (root / f"f{i}.txt").write_text(" ".join(rng.choice(WORDS, size=300)) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    """The same runs in one process: on one thread, and on two threads."""
    root = tmp_path_factory.mktemp("single")
    train(corpus, root / "t1", threads=1, stream=io.StringIO(), **TINY)
    train(corpus, root / "t2", threads=2, stream=io.StringIO(), **TINY)
    return root


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_any_number_of_ranks_trains_the_single_process_model(ranks, corpus, single, tmp_path):
    run = tmp_path / "run"
    done = _mpi_train(ranks, "--corpus", str(corpus), "--out", str(run), "--threads", "1", *_flags(TINY))
    assert done.returncode == 0, done.stderr
    _assert_same_model(_params(run), _params(single / "t1"))
    _assert_same_history(_history(run), _history(single / "t1"))
    if ranks <= 2:  # the same shards, summed the same way (one rank x 1 thread, two x 1): bit for bit
        expected = _params(single / f"t{ranks}")
        for name, value in _params(run).items():
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
        assert _history(run) == _history(single / f"t{ranks}")
    # rank 0 alone reported (one progress stream, one summary)
    assert done.stderr.count("done: 6 steps") == 1 and done.stderr.count("step 6/6") == 1
    word = "ranks" if ranks > 1 else "rank"
    assert f"stepping on {ranks} {word} x 1 worker thread (--threads)" in done.stderr


@needs_mpi
def test_gradient_accumulation_across_ranks(corpus, tmp_path):
    options = {**TINY, "grad_accum": 2, "steps": 4}
    train(corpus, tmp_path / "single", threads=1, stream=io.StringIO(), **options)
    done = _mpi_train(3, "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--threads", "1", *_flags(options))
    assert done.returncode == 0, done.stderr
    _assert_same_model(_params(tmp_path / "run"), _params(tmp_path / "single"))
    _assert_same_history(_history(tmp_path / "run"), _history(tmp_path / "single"))


@needs_mpi
def test_only_rank_0_writes(corpus, tmp_path):
    """Ranks 1 and 2 run with umask 077: any file or directory they made would be owner-only."""
    run = tmp_path / "run"
    args = ["train", "--distributed", "mpi", "--corpus", str(corpus), "--out", str(run), "--threads", "1",
            *_flags(TINY)]
    quoted = " ".join(f"'{a}'" for a in [*CLI, *args])
    cmd = [MPIEXEC, "-n", "1", "sh", "-c", f"umask 022; exec {quoted}", ":",
           "-n", "2", "sh", "-c", f"umask 077; exec {quoted}"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stepping on 3 ranks" in done.stderr
    paths = [run, *run.rglob("*")]
    assert len(paths) > 8
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode in (0o644, 0o755), f"{path} has mode {oct(mode)}: written by another rank than 0"
    steps = [r["step"] for r in _history(run) if "loss" in r]
    assert steps == list(range(1, 7))  # each step logged once


@needs_mpi
def test_ranks_that_built_other_weights_start_from_rank_0s(corpus, single, tmp_path):
    """However a rank made its model (here another --seed: other weights, another sampler), every
    rank steps from rank 0's, so the run is rank 0's run, bit for bit (two ranks, as above)."""
    run = tmp_path / "run"
    args = [*CLI, "train", "--distributed", "mpi", "--corpus", str(corpus), "--out", str(run), "--threads", "1",
            *_flags(TINY)]
    cmd = [MPIEXEC, "-n", "1", *args, ":", "-n", "1", *args, "--seed", "99"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "note: rank(s) [1] built other initial weights than rank 0" in done.stderr
    expected = _params(single / "t2")
    for name, value in _params(run).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


@needs_mpi
def test_resume_with_another_number_of_ranks(corpus, single, tmp_path):
    """2 ranks to step 4, then 3 ranks (and, bit for bit, one process on 2 threads) on to step 8."""
    first = {**TINY, "steps": 4, "save_every": 4}
    run = tmp_path / "run"
    assert _mpi_train(2, "--corpus", str(corpus), "--out", str(run), "--threads", "1", *_flags(first)).returncode == 0
    shutil.copytree(run, tmp_path / "copy")
    done = _mpi_train(3, "--resume", str(run), "--steps", "8", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("resuming") == 1
    again = _mpi_train(2, "--resume", str(run), "--threads", "1")  # complete: said once, status 0
    assert again.returncode == 0 and again.stderr.count("already complete: 8 of 8 steps") == 1, again.stderr
    train(resume=tmp_path / "copy", steps=8, threads=2, stream=io.StringIO())

    # the reference: one process, the same two legs
    ref = tmp_path / "ref"
    train(corpus, ref, threads=2, stream=io.StringIO(), **first)
    train(resume=ref, steps=8, threads=2, stream=io.StringIO())
    _assert_same_model(_params(run), _params(ref))
    _assert_same_history(_history(run), _history(ref))
    for name, value in _params(tmp_path / "copy").items():
        np.testing.assert_array_equal(value, _params(ref)[name], err_msg=name)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _descendants(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("python") and {f"PMI_RANK={rank}".encode(), f"OMPI_COMM_WORLD_RANK={rank}".encode()} & set(environ):
            return pid
    return None


def _start_long_run(corpus, run, ranks: int, save_every: int) -> subprocess.Popen:
    options = {**TINY, "steps": 100000, "save_every": save_every, "eval_every": 100000}
    cmd = [MPIEXEC, "-n", str(ranks), *CLI, "train", "--distributed", "mpi", "--corpus", str(corpus),
           "--out", str(run), "--threads", "1", *_flags(options)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for_steps(proc, run, steps: int, saved: bool = True) -> None:
    deadline = time.monotonic() + 60
    metrics = run / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= steps
               and (run / "checkpoint").is_dir() >= saved):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


@needs_mpi
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(victim, corpus, tmp_path):
    run = tmp_path / "run"
    proc = _start_long_run(corpus, run, 3, save_every=1 if victim == 0 else 3)  # rank 0: likely mid-save
    try:
        _wait_for_steps(proc, run, 5)
        pid = _rank_pid(proc.pid, victim)
        if pid is None:
            pytest.skip("the launcher sets neither PMI_RANK nor OMPI_COMM_WORLD_RANK: the rank cannot be found")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.communicate(timeout=30)
        ended = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert ended < 10, f"the job took {ended:.1f}s to end after a rank died"
    model, _ = checkpoint.load(run)
    state = checkpoint.load_training_state(run, model).trainer_state
    step = state["step"]
    assert step >= 3
    done = _mpi_train(2, "--resume", str(run), "--steps", str(step + 2), "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == step + 2


@needs_mpi
def test_ctrl_c_on_mpiexec_saves_once_and_resumes(corpus, tmp_path):
    run = tmp_path / "run"
    proc = _start_long_run(corpus, run, 2, save_every=100000)
    try:
        _wait_for_steps(proc, run, 3, saved=False)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal does to mpiexec
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.count("checkpoint saved. Continue with `tiss train --resume") == 1
    assert err.count("tiss: interrupted") == 1 and "Traceback" not in err
    step = json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"]
    assert 3 <= step < 100000
    done = _mpi_train(3, "--resume", str(run), "--steps", str(step + 2), "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in _history(run) if "loss" in r] == list(range(1, step + 3))


@needs_mpi
def test_an_error_every_rank_sees_is_printed_once(corpus, tmp_path):
    done = _mpi_train(3, "--corpus", str(corpus), "--out", str(tmp_path / "run"), *_flags({**TINY, "batch_size": 2}))
    assert done.returncode == 2
    assert done.stderr.count("tiss: error:") == 1, done.stderr
    assert "--batch-size 2 is smaller than the 3 ranks" in done.stderr
    assert not (tmp_path / "run").exists()


@needs_mpi
def test_a_rank_that_cannot_see_the_run_directory_stops_every_rank(corpus, tmp_path):
    """Rank 1 starts in another directory, so the relative --out names a directory rank 0 never wrote."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [*CLI, "train", "--distributed", "mpi", "--corpus", str(corpus), "--out", "run", *_flags(TINY)]
    cmd = [MPIEXEC, "-n", "1", "-wdir", str(tmp_path), *args, ":", "-n", "1", "-wdir", str(elsewhere), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("tiss: error:") == 1
    assert "tiss: error: rank 1 of 2: token files in run/data are missing" in done.stderr
    assert "filesystem all hosts share" in done.stderr


GUARD_SCRIPT = """
import sys, numpy as np
from lm.distributed import connect
from lm.train import TrainError
group = connect("mpi")
with group.guard():
    if group.rank == 1:
        raise TrainError("the disk of rank 1 is full")
    group.reduce(np.zeros(1000, np.float32), [0.0], False)  # rank 0 waits here for rank 1
"""


@needs_mpi
def test_an_error_only_one_rank_sees_aborts_the_job_at_once(tmp_path):
    start = time.monotonic()
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", GUARD_SCRIPT], capture_output=True,
                          text=True, env=ENV, timeout=60)
    assert time.monotonic() - start < 20
    assert done.returncode == 2, done.stderr
    assert "tiss: error: rank 1 of 2: the disk of rank 1 is full; stopping every rank" in done.stderr


def test_a_single_process_outside_mpiexec_is_told_how_to_start(tmp_path, corpus):
    pytest.importorskip("mpi4py")
    env = {k: v for k, v in ENV.items() if not k.startswith(("PMI", "PMIX", "OMPI_COMM", "MPI_LOCAL", "HYDRA"))}
    done = subprocess.run([*CLI, "train", "--distributed", "mpi", "--corpus", str(corpus), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("tiss: error: --distributed mpi found a single process: start one per rank")
    assert "mpiexec -n N tiss train --distributed mpi" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_launcher_of_another_mpi_is_recognised(tmp_path, corpus):
    """Started by an mpiexec that is not this MPI's, each process would be a world of one."""
    pytest.importorskip("mpi4py")
    env = {k: v for k, v in ENV.items() if not k.startswith(("PMI", "PMIX", "OMPI_COMM", "MPI_LOCAL", "HYDRA"))}
    env["OMPI_COMM_WORLD_SIZE"] = "3"  # what Open MPI's mpirun tells each of 3 processes
    done = subprocess.run([*CLI, "train", "--distributed", "mpi", "--corpus", str(corpus), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]  # mpi4py may warn first ("suspicious MPI execution environment")
    assert last.startswith("tiss: error: the launcher started 3 processes but MPI sees 1: that mpiexec")
    assert not (tmp_path / "run").exists()


def test_without_mpi4py_the_message_names_the_extra(tmp_path, corpus, monkeypatch, capsys):
    from runtime import cli

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(DistributedError, match=r"needs mpi4py and an MPI library: pip install 'quantatissu\[mpi\]'"):
        train(corpus, tmp_path / "run", distributed="mpi", stream=io.StringIO(), **TINY)
    assert cli.main(["train", "--distributed", "mpi", "--corpus", str(corpus), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == "tiss: error: --distributed mpi needs mpi4py and an MPI library: pip install 'quantatissu[mpi]'\n"
    assert not (tmp_path / "run").exists()


FAKE_MPI = types.SimpleNamespace(COMM_TYPE_SHARED=1)


class _FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind):
        return self

    def Free(self):
        pass


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_shares_cover_the_batch_and_weights_make_the_mean(size):
    from lm.loss import IGNORE_INDEX

    rng = np.random.default_rng(size)
    targets = rng.integers(0, 50, size=(7, 9))
    targets[0, :4] = IGNORE_INDEX
    targets[5, :] = IGNORE_INDEX
    losses = rng.random(targets.shape)  # per-position losses; the batch loss is their counted mean
    counted = targets != IGNORE_INDEX
    expected = losses[counted].mean()
    rows, total = [], 0.0
    for rank in range(size):
        lo, hi, weight = MPIGroup(_FakeComm(rank, size), FAKE_MPI).share(targets)
        rows.extend(range(lo, hi))
        if counted[lo:hi].any():
            total += losses[lo:hi][counted[lo:hi]].mean() * weight
        else:
            assert weight == 0.0
    assert rows == list(range(7))
    assert total == pytest.approx(expected, rel=1e-12)


def test_every_tiss_command_in_the_scale_out_guide_parses():
    """docs/scale-out.md's `mpiexec ... tiss train ...` lines stay true to the CLI."""
    import re
    import shlex

    from docblocks import shell_lines
    from runtime import cli

    text = (Path(__file__).resolve().parents[2] / "docs" / "scale-out.md").read_text(encoding="utf-8")
    commands = []
    for line in shell_lines(text):  # tiss comes after mpiexec's own words here
        words = shlex.split(re.sub(r'"?\$\w+"?', "1", line), comments=True)
        starts = [i for i, w in enumerate(words) if w == "tiss" or w.endswith("/tiss")]
        if starts:
            commands.append(words[starts[0] + 1:])
    assert len(commands) >= 4 and all("--distributed" in c for c in commands)
    for argv in commands:
        try:
            args = cli.create_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/scale-out.md: `tiss {' '.join(argv)}` is rejected by the CLI")
        assert args.distributed == "mpi"
