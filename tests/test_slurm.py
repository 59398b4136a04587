"""cluster-slurm.sbatch under a real SLURM of two nodes on this machine: Debian's munged,
slurmctld and slurmd, started here as root with a configuration of their own (ports, key,
folders). Node a is this machine's network under the host name nodea; node b has a network
namespace of its own, joined to a's by a veth pair, and the host name nodeb; each has a GPU as
SLURM knows one (a device file, no GPU behind it); SLURM tracks jobs in cgroups where the
machine lets it. The job starts Ray on both through srun, runs the sweep there, stops it with its
state saved on the time limit's signal and on scancel, and runs it to the end on `resume`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.moto_s3 import free_port
from sweep_helpers import epochs_run, results, retina_spec, trial_dirs, wait_for

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster-slurm.sbatch"
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
COMMANDS = ("sbatch", "srun", "scancel", "squeue", "scontrol", "sinfo", "ip", "unshare", "nsenter")
# SIGKILL this long after scancel's SIGTERM (SLURM's default is 30 s): the driver stops the sweep
# in a second or two, and the Ray steps, which ignore SIGTERM, go at the SIGKILL.
KILL_WAIT_S = 15
# SLURM tracks a job's processes in cgroups, as clusters do, where this machine has cgroup v1's
# controllers to write (each slurmd keeps its own slurm_<node> folder in each); else by their
# parents (proctrack/linuxproc), which a process that leaves its step escapes.
CGROUP = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("freezer", "cpuset", "devices", "memory")
CGROUP_CONF = ("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainCores=yes\nConstrainDevices=yes\n"
               "ConstrainRAMSpace=yes\n")

SLURM_CONF = """\
ClusterName=medsweeptest
SlurmctldHost=nodea({a})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool-%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ProctrackType={proctrack}
TaskPlugin={task}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait={kill_wait}
FirstJobId={first_job_id}
NodeName=nodea NodeAddr={a} CPUs=2 RealMemory=6000 Gres=gpu:1
NodeName=nodeb NodeAddr={b} CPUs=3 RealMemory=6000 Gres=gpu:1
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    """The test's SLURM: its commands run with its configuration, and the jobs it was given."""

    def __init__(self, root: Path, env: dict[str, str], head_ip: str, cgroups: bool):
        self.root, self.env, self.head_ip, self.cgroups, self.jobs = root, env, head_ip, cgroups, []

    def run(self, *command: str) -> str:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=True, timeout=60).stdout

    def submit(self, *arguments: str, head_ip: str | None = None, after: str | None = None, path: str = "",
               options: tuple[str, ...] = ()) -> str:
        """A job of cluster-slurm.sbatch on both nodes with their GPU (one each), its output in root;
        queued to start once job ``after`` has ended short of success, where given; ``path`` first
        on PATH; ``options`` more of sbatch's, over the script's own #SBATCH lines."""
        env = {**self.env, "MEDSWEEP_HEAD_IP": head_ip or self.head_ip}
        if path:
            env["PATH"] = f"{path}:{env['PATH']}"
        dependency = [f"--dependency=afternotok:{after}"] if after else []
        job = subprocess.run(["sbatch", "--parsable", "--nodes=2", "--gpus-per-node=1", *options, *dependency,
                              f"--output={self.root}/job-%j.out", f"--chdir={self.root}", str(SCRIPT), *arguments],
                             env=env, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        self.jobs.append(job)
        return job

    def output(self, job: str) -> str:
        path = self.root / f"job-{job}.out"
        return path.read_text() if path.exists() else ""

    def ended(self, job: str, timeout: float = 300) -> dict[str, str]:
        """JobState and ExitCode once the job has left the queue (its Ray steps too)."""
        wait_for(lambda: not self.run("squeue", "--noheader", f"--jobs={job}").strip(), timeout, f"job {job} to end")
        shown = self.run("scontrol", "show", "job", job)
        return dict(re.findall(r"\b(JobState|ExitCode)=(\S+)", shown))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [path for path in DAEMONS if not os.access(path, os.X_OK)]
    missing += [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install munge slurmctld slurmd slurm-client iproute2; "
                    ".ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("slurmd runs jobs only as root, and node b's network namespace needs root")
    root = tmp_path_factory.mktemp("slurm")
    (root / "state").mkdir()
    (root / "home").mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    tag = os.getpid() % 250  # this run's subnet, interfaces and job IDs: apart from another run's
    a, b = f"198.18.{tag}.1", f"198.18.{tag}.2"  # RFC 2544's range for tests, routed nowhere
    veth_a, veth_b = f"msw{tag}a", f"msw{tag}b"
    conf = root / "slurm.conf"
    # GPUs as SLURM knows them: device files (NVIDIA's major number), of no GPU. SLURM gives a job
    # their indices in CUDA_VISIBLE_DEVICES; Ray is told their count, and CUDA finds none.
    for index in range(2):
        subprocess.run(["mknod", str(root / f"nvidia{index}"), "c", "195", str(index)], check=True)
    (root / "gres.conf").write_text(f"NodeName=nodea Name=gpu File={root}/nvidia0\n"
                                    f"NodeName=nodeb Name=gpu File={root}/nvidia1\n")
    cgroups = all((CGROUP / name / "cgroup.procs").exists() and os.access(CGROUP / name, os.W_OK)
                  for name in CGROUP_CONTROLLERS)
    if cgroups:
        (root / "cgroup.conf").write_text(CGROUP_CONF)
    conf.write_text(SLURM_CONF.format(a=a, b=b, root=root, ctld_port=free_port(), slurmd_port=free_port(),
                                      kill_wait=KILL_WAIT_S, first_job_id=100_000 + os.getpid() % 800_000,
                                      proctrack="proctrack/cgroup" if cgroups else "proctrack/linuxproc",
                                      task="task/cgroup" if cgroups else "task/none"))
    # The jobs run with this environment: medsweep and ray on PATH, Ray's token in a home of their own.
    env = {**os.environ, "SLURM_CONF": str(conf), "HOME": str(root / "home"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    cluster = Slurm(root, env, a, cgroups)
    # node b's namespaces, held open by a process of their own until its slurmd runs in them
    holder = subprocess.Popen(["unshare", "--net", "--uts", "sh", "-c", "hostname nodeb && exec sleep infinity"])

    def sh(command: str, namespace: bool = False) -> None:
        prefix = ["nsenter", "-t", str(holder.pid), "-n", "-u"] if namespace else []
        subprocess.run([*prefix, "sh", "-ec", command], env=env, check=True, timeout=60)

    try:
        wait_for(lambda: subprocess.run(["nsenter", "-t", str(holder.pid), "-u", "hostname"], capture_output=True,
                                        text=True).stdout.strip() == "nodeb", 10, "node b's namespaces")
        sh(f"ip link add {veth_a} type veth peer name {veth_b}; ip addr add {a}/24 dev {veth_a}; "
           f"ip link set {veth_a} up; ip link set {veth_b} netns {holder.pid}")
        sh(f"ip link set lo up; ip addr add {b}/24 dev {veth_b}; ip link set {veth_b} up; "
           f"ip route add default via {a}", namespace=True)
        sh(f"{DAEMONS[0]} --force --key-file={key} --socket={root}/munge.socket --pid-file={root}/munged.pid "
           f"--log-file={root}/munged.log --seed-file={root}/munge.seed")
        # slurmctld and node a's slurmd under the host name nodea (a namespace of their own: the
        # machine's own name is untouched), both on this machine's network
        sh(f"unshare --uts sh -ec 'hostname nodea; {DAEMONS[1]} -f {conf} -i; {DAEMONS[2]} -f {conf}'")
        sh(f"{DAEMONS[2]} -f {conf}", namespace=True)
        wait_for(lambda: cluster.run("sinfo", "--noheader", "--Node", "--format=%T").split() == ["idle", "idle"], 60,
                 "both SLURM nodes to be idle")
        yield cluster
    finally:
        if cluster.jobs:
            subprocess.run(["scancel", "--signal=KILL", *cluster.jobs], env=env, capture_output=True)
            deadline = time.monotonic() + 60
            while subprocess.run(["squeue", "--noheader"], env=env, capture_output=True, text=True).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
        for name in ("slurmd-nodea", "slurmd-nodeb", "slurmctld", "munged"):  # the daemons started here, by pid
            pid_file = root / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "link", "del", veth_a], capture_output=True)  # gone with node b's namespace, else now
        for folder in (CGROUP / name / f"slurm_{node}" for name in CGROUP_CONTROLLERS for node in ("nodea", "nodeb")):
            try:
                folder.rmdir()  # the slurmds' cgroups, empty once their jobs have ended
            except OSError:
                pass
        for job in cluster.jobs:  # each job's Ray folder (cluster-slurm.sbatch's RAY_TMPDIR)
            shutil.rmtree(f"/tmp/medsweep-ray-{job}", ignore_errors=True)


def ray_processes(job: str) -> list[str]:
    """Processes of the job's Ray: their command lines name its temporary folder."""
    found = subprocess.run(["pgrep", "-a", "-f", f"/tmp/medsweep-ray-{job}/"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def cluster_line(slurm: Slurm, cpus: int, memory_gib: float) -> str:
    """The job's line of what its Ray cluster holds: two nodes of a GPU each, ``cpus`` CPUs, and in
    cgroups ``memory_gib`` for trials (without them, the start of the line: the memory is the
    machine's as Ray finds it)."""
    line = f"cluster-slurm: the Ray cluster: 2 of 2 node(s), {cpus} CPUs, 2 GPUs, "
    return f"{line}{memory_gib:.1f} GiB of memory for trials\n" if slurm.cgroups else line


def freezer_cgroup(pid: str) -> str:
    """The process's cgroup of the freezer controller (proctrack/cgroup's), or "" once it has ended."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 2)[2] for line in lines if line.split(":")[1] == "freezer"), "")


def listening_ports(job: str) -> set[int]:
    """TCP ports the job's processes listen on in this machine's network (node a's): each of them
    has the job's RAY_TMPDIR in its environment (the client server has no folder in its command line)."""
    pids = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"\0RAY_TMPDIR=/tmp/medsweep-ray-{job}\0".encode() in b"\0" + environ.read_bytes():
                pids.add(environ.parent.name)
        except OSError:  # gone, or not ours to read
            pass
    shown = subprocess.run(["ss", "--listening", "--tcp", "--numeric", "--processes", "--no-header"],
                           capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in shown.splitlines()
            if pids & set(re.findall(r"pid=(\d+)", line))}


@pytest.mark.slow
def test_a_sweep_on_two_nodes_stopped_by_the_time_limit_and_by_scancel_resumes_to_the_end(slurm, real_root, tmp_path):
    # Each trial asks for a GPU: Ray places them on the GPUs SLURM gave (CUDA finds none, so they train
    # on the CPU).
    spec = retina_spec(tmp_path, "retina-slurm", num_samples=2, max_concurrent=2, scheduler={"type": "fifo"},
                       train={"epochs": 4}, resources={"cpu": 1, "gpu": 1})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    folder = tmp_path / "retina-slurm"
    slurm.env["MEDMNIST_ROOT"] = str(real_root)

    def epochs() -> int:
        return sum(len(epochs_run(t)) for t in trial_dirs(folder)) if folder.exists() else 0

    def stopped(job: str, end: dict[str, str]) -> None:
        out = slurm.output(job)
        assert end["ExitCode"] == "143:0", out[-3000:]
        terminated = [line for line in out.splitlines() if line.startswith("medsweep: terminated: ")]
        assert len(terminated) == 1 and terminated[0].endswith(f"continue with: medsweep resume {folder}"), out[-3000:]
        assert "did not stop the sweep within" not in terminated[0]  # through Ray Tune, not past the grace
        assert "cluster-slurm: stopped with the sweep's state saved; to go on: sbatch cluster-slurm.sbatch resume " \
            "FOLDER" in out
        wait_for(lambda: not ray_processes(job), 30, f"job {job}'s Ray processes to end")

    # A loopback head address: the other node could not join.
    job = slurm.submit("sweep", str(spec_file), head_ip="127.0.0.1")
    assert slurm.ended(job)["ExitCode"] == "2:0"
    assert slurm.output(job) == ("cluster-slurm: MEDSWEEP_HEAD_IP: 127.0.0.1 (nodea) is a loopback address, which the "
                                 "other nodes cannot reach; set it to one they can\n")

    # medsweep on PATH without its venv: the python3 found (a bare venv's) cannot import Ray.
    bare = tmp_path / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare.mkdir()
    (bare / "python3").symlink_to(tmp_path / "bare" / "bin" / "python3")
    for name in ("medsweep", "ray"):
        (bare / name).symlink_to(Path(sys.executable).parent / name)
    job = slurm.submit("sweep", str(spec_file), path=str(bare))
    assert slurm.ended(job)["ExitCode"] == "2:0"
    assert slurm.output(job) == (f"cluster-slurm: python3: {bare}/python3 cannot import ray and medsweep; activate "
                                 "the medsweep venv before sbatch\n")

    # A trial that no node can hold (2 GPUs; each node has 1): the job has no autoscaler to add one,
    # so it ends at once, rather than wait with its nodes idle until its time limit.
    too_big = tmp_path / "too-big.yaml"
    too_big.write_text(retina_spec(tmp_path, "too-big", resources={"cpu": 1, "gpu": 2}).to_yaml())
    job = slurm.submit("sweep", str(too_big))
    end = slurm.ended(job)
    out = slurm.output(job)
    assert end["ExitCode"] == "2:0", out[-3000:]
    assert "\nmedsweep: error: resources: one trial asks for cpu 1, gpu 2, but no node of this Ray cluster has " \
           "that (the most on any node: cpu 3, gpu 1); allowed: at most one node's resources, as --no-autoscaler" in out
    assert out.startswith("cluster-slurm: Ray's token generated in ~/.ray/auth_token\n"), out[:500]  # the first job's
    wait_for(lambda: not ray_processes(job), 30, f"job {job}'s Ray processes to end")

    # The time limit's signal (the script's --signal=B:TERM) reaches the batch shell alone. Each
    # node has one GPU: the two trials run at once, one on each. A resume waits in the queue.
    job = slurm.submit("sweep", str(spec_file))
    queued_resume = slurm.submit("resume", str(folder), after=job)
    wait_for(lambda: folder.exists() and len(trial_dirs(folder)) == 2 and all(map(epochs_run, trial_dirs(folder))),
             300, "a first epoch of each trial")
    # The head's ports are the job's own, none of Ray's fixed defaults: jobs may share a node.
    port = int(re.search(rf"Ray head on nodea \({re.escape(slurm.head_ip)}:(\d+)\)", slurm.output(job))[1])
    assert port == 20000 + int(job) % 5000 * 4
    listening = listening_ports(job)
    assert {port, port + 1} <= listening and not listening & {6379, 10001, 8265, 52365}, listening
    if slurm.cgroups:  # every Ray process in the job's cgroups, the daemons Ray starts too: SLURM ends them with it
        pids = [line.split()[0] for line in ray_processes(job)]
        assert len(pids) >= 6 and all(f"/job_{job}/step_" in freezer_cgroup(pid) for pid in pids), \
            {pid: freezer_cgroup(pid) for pid in pids}
    slurm.run("scancel", "--batch", "--signal=TERM", job)
    end = slurm.ended(job)
    done_before = epochs()  # before the queued resume, which takes seconds to start Ray, trains
    stopped(job, end)
    assert end["JobState"] == "FAILED"  # not cancelled: the script itself ended, and its Ray steps
    # Whole nodes (the script's --exclusive and --mem=0) of 2 and 3 CPUs and 6000 MiB: each node's Ray
    # has its own; in cgroups, 70 % of the job's memory limit for trials (the rest Ray's object store).
    assert cluster_line(slurm, cpus=5, memory_gib=2 * 0.7 * 6000 / 1024) in slurm.output(job)
    assert len({results(t)[0]["node_id"] for t in trial_dirs(folder)}) == 2
    assert 2 <= done_before < 8

    # The queued resume starts; scancel signals every process of it: Ray's, which ignore it, and
    # the driver's.
    job = queued_resume
    wait_for(lambda: epochs() > done_before, 300, "an epoch after the resume")
    slurm.run("scancel", job)
    end = slurm.ended(job)
    stopped(job, end)
    assert end["JobState"] == "CANCELLED"

    # Nodes shared with other jobs, two tasks of one CPU on each and 4 GiB: a node's Ray is one task,
    # and has the job's two CPUs there, not one task's one, and 70 % of the 4 GiB.
    job = slurm.submit("resume", str(folder), options=("--oversubscribe", "--ntasks-per-node=2", "--cpus-per-task=1",
                                                       "--mem=4G"))
    end = slurm.ended(job, timeout=600)
    out = slurm.output(job)
    assert (end["JobState"], end["ExitCode"]) == ("COMPLETED", "0:0"), out[-3000:]
    for line in (f"job {job}: Ray head on nodea ({slurm.head_ip}:", "medsweep ended with exit 0; ending the Ray steps"):
        assert f"cluster-slurm: {line}" in out
    assert cluster_line(slurm, cpus=4, memory_gib=2 * 0.7 * 4) in out
    # Each node's `ray start` banner is in a file of its own, named in the job's output.
    ray_output = slurm.root / f"medsweep-{job}-ray.out"
    assert f"Ray's output in {ray_output}\n" in out
    assert ray_output.read_text().count("Ray runtime started.") == 2 and "Ray runtime started." not in out
    assert [sorted(set(epochs_run(t))) for t in trial_dirs(folder)] == [[1, 2, 3, 4]] * 2
    assert (folder / "best_config.yaml").exists()
    assert not ray_processes(job)


@pytest.mark.parametrize("arguments, env, refusal", [
    ([], {}, "usage: sbatch cluster-slurm.sbatch sweep SPEC [OPTIONS] | resume FOLDER [OPTIONS]"),
    (["train", "x"], {}, "the command: sweep or resume, got 'train'"),
    (["sweep", "retinamnist", "--address=auto"], {},
     "--address: not allowed here; the job joins the Ray cluster it starts"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": ""}, "SLURM_JOB_ID: not set; submit this script with sbatch"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "MEDSWEEP_RAY_PORT": "80"},
     "MEDSWEEP_RAY_PORT: a port from 1024 to 65532 (the first of the four the job's Ray listens on), got '80'"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "MEDSWEEP_RAY_PORT": "2e4"},
     "MEDSWEEP_RAY_PORT: a port from 1024 to 65532 (the first of the four the job's Ray listens on), got '2e4'"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "SLURM_GPUS": "8"},
     "--gpus=8: GPUs counted over the whole job, which SLURM does not share out among the job's Ray steps; ask for "
     "them per node: --gpus-per-node=N (or --gres=gpu:N)"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "SLURM_GPUS_PER_TASK": "1", "SLURM_TASKS_PER_NODE": "4(x2)"},
     "--gpus-per-task=1 with more than one task on a node (SLURM_TASKS_PER_NODE 4(x2)): each node's Ray is one task "
     "and would get 1 of the node's GPUs; ask for them per node: --gpus-per-node=N (or --ntasks-per-node=1 "
     "--gpus-per-task=N)"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "SLURM_GPUS_PER_TASK": "1", "SLURM_TASKS_PER_NODE": "1(x3),2"},
     "--gpus-per-task=1 with more than one task on a node (SLURM_TASKS_PER_NODE 1(x3),2): each node's Ray is one task "
     "and would get 1 of the node's GPUs; ask for them per node: --gpus-per-node=N (or --ntasks-per-node=1 "
     "--gpus-per-task=N)"),
    # one task a node holds all the node's GPUs of the job: past that check, to the next
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "SLURM_GPUS_PER_TASK": "4", "SLURM_TASKS_PER_NODE": "1(x12)",
                                "PATH": "/usr/bin:/bin"},
     "medsweep: not on PATH; activate the medsweep venv before sbatch"),
    (["sweep", "retinamnist"], {"SLURM_JOB_ID": "7", "PATH": "/usr/bin:/bin"},
     "medsweep: not on PATH; activate the medsweep venv before sbatch"),
])
def test_the_slurm_script_refuses_bad_use_in_one_line(arguments, env, refusal):
    run = subprocess.run(["bash", str(SCRIPT), *arguments], env={**os.environ, **env}, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (2, f"cluster-slurm: {refusal}\n")
