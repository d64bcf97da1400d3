"""A real single-node SLURM (Debian's 22.05 packages) started by hand for the test suite.

`slurm_cluster()` installs `slurmctld slurmd slurm-client munge` when they are missing (as
root, through apt, and only with EDN_SLURM_TESTS=1: `make test-slurm`), writes a munge key and slurm.conf into a private temp dir, starts munged,
slurmctld and slurmd in the foreground as child processes, waits until the node is idle and
yields a `SlurmCluster`. On exit it stops exactly those three processes by PID and removes the
/etc/slurm/slurm.conf symlink it made. Everything listens on 127.0.0.1 only.

Facts this relies on (checked on Debian 12 machines without systemd):
- apt's policy-rc.d blocks service starts, so the daemons are started here, not by apt;
- the job step's own `srun` drops the SLURM_* variables (SLURM_CONF included) and then looks
  for /etc/slurm/slurm.conf, so that path must point at our configuration while we run;
- without slurmdbd there is no accounting, so `sacct` fails: clients must use `squeue`
  (profile key `slurm-status-command: squeue`) and keep jobs visible for a while (MinJobAge).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged")
ETC_CONF = Path("/etc/slurm/slurm.conf")
# One cluster per machine at a time: /etc/slurm/slurm.conf is a single global path.
LOCK_FILE = Path(tempfile.gettempdir()) / "edn-test-slurm.lock"
PARTITION = "debug"


class SlurmUnavailable(RuntimeError):
    """SLURM is not installed and cannot be installed here (not root, no apt)."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install_packages(timeout: float = 600) -> None:
    """apt-get install the SLURM packages; CI runs as root on Debian."""
    if not missing_binaries():
        return
    if os.environ.get("EDN_SLURM_TESTS") != "1":  # tests/conftest.py: only when asked for
        raise SlurmUnavailable(f"SLURM missing ({', '.join(missing_binaries())}); installing it is opt-in: "
                               "make test-slurm or EDN_SLURM_TESTS=1")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM missing ({', '.join(missing_binaries())}) and cannot be installed "
                               "here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if missing_binaries():
        raise RuntimeError(f"still missing after apt-get install: {missing_binaries()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> str:
    """`slurmd -C`'s hardware fields (CPUs, sockets, cores, threads) without RealMemory."""
    first = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    keep = ("CPUs=", "Boards=", "SocketsPerBoard=", "CoresPerSocket=", "ThreadsPerCore=")
    return " ".join(f for f in first.split() if f.startswith(keep))


def _real_memory_mb() -> int:
    """About 90% of physical memory, so slurmd does not drain the node for reporting less."""
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return int(total_kb / 1024 * 0.9)


@dataclass
class SlurmCluster:
    base: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    made_symlink: bool = False

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, squeue, snakemake) talking to this cluster."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    # -- start-up ---------------------------------------------------------------------------
    def _start_munge(self) -> str:
        munge_user = pwd.getpwnam("munge")
        mdir = self.base / "munge"
        # munged wants its socket dir searchable by everyone (clients connect as any user)
        mdir.mkdir()
        mdir.chmod(0o755)
        key = mdir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (mdir, key):
            os.chown(path, munge_user.pw_uid, munge_user.pw_gid)
        socket_path = mdir / "munge.socket.2"
        cmd = ["munged", "--foreground", f"--key-file={key}", f"--socket={socket_path}",
               f"--pid-file={mdir / 'munged.pid'}", f"--log-file={mdir / 'munged.log'}",
               f"--seed-file={mdir / 'munged.seed'}"]
        # munged refuses to run as root with a non-root key; it runs as the munge user.
        self.procs["munged"] = subprocess.Popen(
            cmd, user=munge_user.pw_uid, group=munge_user.pw_gid, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(mdir / "munged.stderr", "w"))
        self._wait(lambda: socket_path.exists(), 20, "munged socket", mdir / "munged.log")
        return str(socket_path)

    def _write_conf(self, munge_socket: str) -> None:
        for sub in ("state", "spool", "log", "run"):
            (self.base / sub).mkdir()
        b = self.base
        lines = [
            "ClusterName=edntest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            # loopback only: without these the daemons bind 0.0.0.0
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root", "SlurmdUser=root",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none", "MailProg=/bin/true", "ReturnToService=2",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            # squeue-based status checks need finished jobs to stay visible (>= 3 x the
            # plugin's first status delay, 10 s in our test profile)
            "MinJobAge=300",
            "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=1",
            f"StateSaveLocation={b / 'state'}", f"SlurmdSpoolDir={b / 'spool'}",
            f"SlurmctldLogFile={b / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={b / 'log' / 'slurmd.log'}",
            f"SlurmctldPidFile={b / 'run' / 'slurmctld.pid'}", f"SlurmdPidFile={b / 'run' / 'slurmd.pid'}",
            f"NodeName={self.host} NodeAddr=127.0.0.1 {_node_hardware()} RealMemory={_real_memory_mb()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _link_etc_conf(self) -> None:
        stale = ETC_CONF.is_symlink() and Path(os.readlink(ETC_CONF)).parent.name.startswith("edn-slurm-")
        if stale:
            # Left by a test run that was killed before it could clean up; we hold LOCK_FILE,
            # so no other test cluster is using it.
            ETC_CONF.unlink()
        if ETC_CONF.is_symlink() or ETC_CONF.exists():
            raise RuntimeError(f"{ETC_CONF} exists already; refusing to replace a real SLURM configuration")
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        ETC_CONF.symlink_to(self.conf)
        self.made_symlink = True

    def _wait(self, ready, timeout: float, what: str, log: Path | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"timed out waiting for {what} (exited: {[n for n, p in self.procs.items() if p.poll() is not None]})\n{tail}")

    def node_state(self) -> str:
        done = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=15)
        return done.stdout.strip() if done.returncode == 0 else ""

    def start(self, timeout: float = 60) -> None:
        munge_socket = self._start_munge()
        self._write_conf(munge_socket)
        self._link_etc_conf()
        log = self.base / "log"
        for daemon in ("slurmctld", "slurmd"):
            # -D: foreground, so the PID we hold is the daemon's own
            self.procs[daemon] = subprocess.Popen(
                [daemon, "-D", "-f", str(self.conf)], env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=open(log / f"{daemon}.stderr", "w"))
            if daemon == "slurmctld":
                self._wait(lambda: self.run("scontrol", "ping", check=False, timeout=15).returncode == 0,
                           timeout, "slurmctld", log / "slurmctld.log")
        self._wait(lambda: self.node_state() == "idle", timeout, "the node to become idle", log / "slurmd.log")

    # -- shut-down --------------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM each daemon we started (reverse order), SIGKILL after 10 s; undo the symlink."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            # jobs still queued or running belong to this throw-away cluster
            self.run("scancel", "--full", f"--partition={PARTITION}", check=False, timeout=15)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.made_symlink and ETC_CONF.is_symlink() and os.readlink(ETC_CONF) == str(self.conf):
            ETC_CONF.unlink()
            self.made_symlink = False

    def squeue_all(self) -> str:
        return self.run("squeue", "-h", "-t", "all", "-o", "%i %j %T", timeout=15).stdout


@contextlib.contextmanager
def slurm_cluster(lock_timeout: float = 900) -> Iterator[SlurmCluster]:
    """Install if needed, start a private single-node cluster, yield it, stop what was started."""
    install_packages()
    LOCK_FILE.touch(exist_ok=True)
    with open(LOCK_FILE) as lock:
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another test SLURM holds {LOCK_FILE}") from None
                time.sleep(2)
        # munged (user munge) must traverse the base dir; pytest's tmp dirs are root-only
        base = Path(tempfile.mkdtemp(prefix="edn-slurm-"))
        base.chmod(0o755)
        cluster = SlurmCluster(base)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            if os.environ.get("EDN_KEEP_SLURM_DIR") != "1":
                shutil.rmtree(base, ignore_errors=True)
