"""NeMo-Run executors: by name on a stage's command line (``run.executor=local`` / ``run.executor=slurm``),
and by launcher for the steps of a pipeline (:func:`launcher_executor`).

``nemo-minitron distill ... run.executor=slurm run.executor.account=A run.executor.partition=P --dryrun``
prints the exact sbatch script without submitting anything. These are NeMo-Run factories,
so NeMo-Run does all the launching (torchrun for several local GPUs, sbatch/srun with a
container on Slurm); nothing here schedules or spawns processes itself.
"""

# No `from __future__ import annotations`: NeMo-Run's factory registry evaluates return types.
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import nemo_run as run

#: How the steps of a pipeline run: in this process, as local processes, or as dependent Slurm jobs.
LAUNCHERS = ("direct", "local", "slurm")


@dataclass
class SlurmOptions:
    """Where and how a Slurm cluster (Pyxis containers) runs: one task per GPU, launched from a
    login node (``LocalTunnel``) or over SSH (``ssh_host`` / ``ssh_user``)."""

    account: str = "<your-slurm-account>"
    partition: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 8
    time: str = "04:00:00"
    container_image: Optional[str] = "nvcr.io/nvidia/pytorch:25.01-py3"
    container_mounts: List[str] = field(default_factory=list)
    job_dir: str = "/tmp/nemo-minitron-runs"
    ssh_host: Optional[str] = None
    ssh_user: str = ""
    env_vars: Optional[Dict[str, str]] = None


@run.cli.factory
def local(devices: int = 1, env_vars: Optional[Dict[str, str]] = None) -> run.Config[run.LocalExecutor]:
    """This machine; with ``devices > 1`` one process per GPU through torchrun (Lightning DDP/FSDP)."""
    launcher = "torchrun" if devices > 1 else None
    return run.Config(run.LocalExecutor, ntasks_per_node=devices, launcher=launcher, env_vars=env_vars or {})


@run.cli.factory
def slurm(options: Optional[SlurmOptions] = None) -> run.Config[run.SlurmExecutor]:
    """A Slurm cluster (:class:`SlurmOptions`; its defaults unless ``options`` is given).

    Set ``run.executor.account`` (and the tunnel's host/user when launching from outside the
    cluster). NeMo-Run builds this factory with its defaults before applying overrides, so the
    account cannot be checked here; ``--dryrun`` shows the sbatch script to review instead.
    """
    opts = options or SlurmOptions()
    if opts.ssh_host:
        tunnel = run.Config(run.SSHTunnel, host=opts.ssh_host, user=opts.ssh_user, job_dir=opts.job_dir)
    else:
        tunnel = run.Config(run.LocalTunnel, job_dir=opts.job_dir)
    return run.Config(
        run.SlurmExecutor,
        account=opts.account, partition=opts.partition, nodes=opts.nodes, ntasks_per_node=opts.gpus_per_node,
        gpus_per_node=opts.gpus_per_node, time=opts.time, container_image=opts.container_image,
        container_mounts=list(opts.container_mounts or []), tunnel=tunnel,
        env_vars={"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(opts.env_vars or {})},
    )


def launcher_executor(launcher: str, slurm_options: Optional[SlurmOptions] = None) -> Any:
    """The built executor for a pipeline ``launcher`` (one of :data:`LAUNCHERS`)."""
    import fiddle as fdl

    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher={launcher!r} must be one of {LAUNCHERS}")
    if launcher == "slurm":
        return fdl.build(slurm(slurm_options))
    return fdl.build(local()) if launcher == "local" else run.LocalExecutor()

