"""Starting a command's worker processes, and stopping them all when one fails.

``minise train`` (also ``evaluate``) runs in the calling process with one worker; with W > 1 it
starts ``mpiexec -n W python -m minise train ...`` (the MPICH wheel's launcher, installed with
minise) and waits for it. Each worker then finds itself inside MPI (``comm.world()``) and runs
the command on its shard. On several machines the user starts ``mpiexec`` themselves, with the
same command line:

    mpiexec -n 8 -hosts a,b python -m minise train --out runs/two-hosts

A worker that raises reports its error in one line and ends every worker (``stop_all_on_error``);
one that dies (a kill, the out-of-memory killer) is reported here, by rank, from what MPI's
launcher prints, which is otherwise filtered out.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ..execution.threads import available_cpus
from .comm import world

ENV = "MINISE_WORKERS"
RANK_FILES = "MINISE_RANK_FILES"   # a folder where each worker writes its pid, for the report of a death
_SIGNALS = {int(s): s.name for s in signal.Signals}
INTERRUPT_GRACE = 5     # seconds the other workers leave worker 0 after Ctrl-C to write its files


def worker_count(requested, device="cpu"):
    """The number of worker processes: ``requested`` (``--workers``), else ``$MINISE_WORKERS``,
    else one per GPU on cuda and one per CPU on the CPU."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"--workers must be a positive whole number of processes, got {requested!r}")
        return requested
    text = os.environ.get(ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected a positive whole number of worker processes")
        return int(text)
    if device == "cuda":
        from ..backend import cupy
        return max(1, cupy.cuda.runtime.getDeviceCount()) if cupy is not None else 1
    return available_cpus()


def threads_per_worker(workers):
    """Each worker's share of the CPUs, at least one: its BLAS threads."""
    return max(1, available_cpus() // workers)


def inside_mpi():
    """True in a process that an MPI launcher started as one of several."""
    return world().size > 1


def mpiexec():
    """The path of ``mpiexec``: the one beside this Python (the MPICH wheel's), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("several workers need MPI's launcher mpiexec, which was not found beside "
                           f"{sys.executable} nor on PATH: `pip install mpich mpi4py` (minise's dependencies) "
                           "installs it; --workers 1 runs without it")
    return found


def launch(prog, argv, workers, threads):
    """Run ``python -m minise argv`` as ``workers`` MPI processes, each with its BLAS held to
    ``threads`` threads; return the exit code. Ctrl-C (SIGINT) and SIGTERM are passed
    on to every worker; a worker that dies (a kill, the out-of-memory killer) is named in one line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="minise-workers-") as ranks:
        env[RANK_FILES] = ranks
        command = [mpiexec(), "-n", str(workers), sys.executable, "-m", "minise", *argv]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        died = {}
        watchers = [threading.Thread(target=_pass_through, args=(process.stdout, sys.stdout, died), daemon=True),
                    threading.Thread(target=_pass_through, args=(process.stderr, sys.stderr, died), daemon=True),
                    threading.Thread(target=_watch, args=(process, ranks, died), daemon=True)]
        for thread in watchers:
            thread.start()
        previous = {s: signal.signal(s, lambda signum, frame: _forward(process, signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = _wait(process)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            _stop_group(process)
            for thread in watchers:
                thread.join(timeout=5)
        if code not in (0, 130) and not died.get("reported") and ("gone" in died or "pid" in died):
            print(f"{prog}: error: {_death(died, workers)}; every worker was stopped", file=sys.stderr, flush=True)
    return code


def _watch(process, folder, died):
    """Note the first worker to vanish while the others run: the one that died. (MPI's launcher
    names a process too, but when it cleans up the others it may name one of them.)"""
    while process.poll() is None:
        pids = {}
        for name in os.listdir(folder):
            with open(os.path.join(folder, name)) as f:
                text = f.read().strip()
            if text.isdigit():
                pids[int(name)] = int(text)
        died["pids"] = pids
        gone = [(rank, pid) for rank, pid in sorted(pids.items()) if not os.path.exists(f"/proc/{pid}")]
        if gone and process.poll() is None:
            died.setdefault("gone", gone)
            return
        time.sleep(0.05)


def _death(died, workers):
    """'worker R of W (pid P) was killed by signal 9 (SIGKILL)', from what was seen of it."""
    gone = died.get("gone", [])
    if len(gone) == 1:
        rank, pid = gone[0]
    else:
        pid = died.get("pid")
        rank = next((r for r, p in died.get("pids", {}).items() if p == pid), None)
    how = died.get("how") if died.get("pid") == pid else "ended without a word (killed, or out of memory)"
    who = f"worker {rank} of {workers}" if rank is not None else f"a worker of {workers}"
    return f"{who} (pid {pid}) {how}"


def run_command(prog, argv, body, workers=None, device="cpu", threads=None, before_launch=None):
    """Run a command (``body()``, its exit code) as this machine's workers want it:
    - started by a user or a script with more than one worker wanted (``workers``, else
      $MINISE_WORKERS, else one per CPU): ``before_launch()`` (checks that need no worker),
      then ``mpiexec`` runs ``python -m minise argv`` once per worker and this waits for them;
    - one worker wanted: ``body()`` here, with no MPI;
    - inside MPI (one of the workers): ``body()``, every failure ending every worker."""
    if not inside_mpi():
        count = worker_count(workers, device)
        if count > 1:
            if before_launch is not None:
                before_launch()
            return launch(prog, argv, count, threads or threads_per_worker(count))
    elif workers not in (None, world().size):
        raise ValueError(f"--workers {workers}, but MPI's launcher started {world().size} workers: "
                         "leave --workers out under mpiexec")
    with stop_all_on_error(prog):
        return body()


@contextlib.contextmanager
def stop_all_on_error(prog):
    """In a worker of several: an exception that leaves the block is reported in one line,
    naming the worker, and ends every worker at once (MPI_Abort), so that none waits forever
    in a sum. Ctrl-C ends them too, with exit code 130, once worker 0 has saved what it saves
    (the others give it INTERRUPT_GRACE seconds). In one process it does nothing."""
    comm = world()
    if comm.size == 1:
        yield
        return
    _note_pid(comm.rank)
    try:
        yield
    except KeyboardInterrupt:
        if comm.rank != 0:          # worker 0 saves interrupted.npz, then ends them all; wait for it a while
            time.sleep(INTERRUPT_GRACE)
        comm.abort(130)
    except SystemExit as stop:
        if stop.code not in (0, None):
            comm.abort(stop.code if isinstance(stop.code, int) else 1)
        raise
    except BaseException as err:                  # noqa: B902  (every failure must end every worker)
        print(f"{prog}: error: worker {comm.rank} of {comm.size}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        comm.abort(1)


def _note_pid(rank):
    folder = os.environ.get(RANK_FILES)
    if folder and os.path.isdir(folder):
        with open(os.path.join(folder, str(rank)), "w") as f:
            f.write(str(os.getpid()))


# What MPICH's launcher prints when a process ends badly: a banner, then advice. Its PID and
# EXIT CODE lines name the process; the rest is dropped.
_BANNER = re.compile(rb"^(={5,}|=   |YOUR APPLICATION TERMINATED|This typically refers|Please see the FAQ|"
                     rb"Abort\(\d+\) on node|application called MPI_Abort|\[mpiexec@|\[proxy:)")


def _pass_through(stream, to, died):
    """Copy what the workers print (progress bars included) to ``to``, less MPI's launcher's
    banner; note the PID and the exit of the process it reports."""
    out, pending = getattr(to, "buffer", None) or _TextWriter(to), b""
    for chunk in iter(lambda: stream.read1(65536), b""):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not _BANNER.match(line):
                out.write(line + b"\n")
            _note_death(line, died)
        if pending and not _BANNER.match(pending) and b"\r" in pending:   # a progress bar's redraw
            cut = pending.rindex(b"\r")
            out.write(pending[:cut])
            pending = pending[cut:]
        out.flush()
    if pending and not _BANNER.match(pending):
        out.write(pending)
        out.flush()


class _TextWriter:
    """Bytes to a text stream that has no binary buffer (a captured sys.stderr)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        self.stream.write(data.decode(errors="replace"))

    def flush(self):
        self.stream.flush()


def _note_death(line, died):
    if re.search(rb": error: worker \d+ of \d+: ", line):
        died["reported"] = True                   # the worker said why itself
    pid = re.search(rb"PID (\d+) RUNNING AT", line)
    if pid and "pid" not in died:
        died["pid"] = int(pid.group(1))
    code = re.search(rb"EXIT CODE: (\d+)", line)
    if code and "how" not in died:
        died["how"] = f"exited with code {int(code.group(1))}"
    killed = re.search(rb"EXIT STRING: .*\(signal (\d+)\)", line)
    if killed:
        value = int(killed.group(1))
        died["how"] = f"was killed by signal {value}" + (f" ({_SIGNALS[value]})" if value in _SIGNALS else "")


def _forward(process, signum):
    """Pass SIGINT or SIGTERM on to mpiexec, which passes it on to every worker."""
    if process.poll() is None:
        os.kill(process.pid, signum)


def _wait(process):
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:                 # pragma: no cover - the handler above forwards it
            _forward(process, signal.SIGINT)


def _stop_group(process, grace=10):
    """Leave no process behind: mpiexec's session is killed if it is still there after ``grace`` s."""
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
