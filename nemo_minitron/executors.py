"""NeMo-Run executors selectable by name on the command line: ``executor=local`` / ``executor=slurm``.

``nemo-minitron distill ... executor=slurm executor.account=A executor.partition=P --dryrun``
prints the exact sbatch script without submitting anything. These are NeMo-Run factories,
so NeMo-Run does all the launching (torchrun for several local GPUs, sbatch/srun with a
container on Slurm); nothing here schedules or spawns processes itself.
"""

# No `from __future__ import annotations`: NeMo-Run's factory registry evaluates return types.
from typing import Optional

import nemo_run as run


@run.cli.factory
def local(devices: int = 1, env_vars: Optional[dict[str, str]] = None) -> run.Config[run.LocalExecutor]:
    """This machine; with ``devices > 1`` one process per GPU through torchrun (Lightning DDP/FSDP)."""
    launcher = "torchrun" if devices > 1 else None
    return run.Config(run.LocalExecutor, ntasks_per_node=devices, launcher=launcher, env_vars=env_vars or {})


@run.cli.factory
def slurm(account: str = "<your-slurm-account>", partition: Optional[str] = None, nodes: int = 1, gpus_per_node: int = 8,
          time: str = "04:00:00", container_image: Optional[str] = "nvcr.io/nvidia/pytorch:25.01-py3",
          container_mounts: Optional[list[str]] = None, job_dir: str = "/tmp/nemo-minitron-runs",
          ssh_host: Optional[str] = None, ssh_user: str = "",
          env_vars: Optional[dict[str, str]] = None) -> run.Config[run.SlurmExecutor]:
    """A Slurm cluster (Pyxis containers): one task per GPU, launched from a login node or over SSH.

    Set ``run.executor.account`` (and ``ssh_host``/``ssh_user`` when launching from outside the
    cluster). NeMo-Run builds this factory with its defaults before applying overrides, so the
    account cannot be checked here; ``--dryrun`` shows the sbatch script to review instead.
    """
    if ssh_host:
        tunnel = run.Config(run.SSHTunnel, host=ssh_host, user=ssh_user, job_dir=job_dir)
    else:
        tunnel = run.Config(run.LocalTunnel, job_dir=job_dir)
    return run.Config(
        run.SlurmExecutor,
        account=account, partition=partition, nodes=nodes, ntasks_per_node=gpus_per_node,
        gpus_per_node=gpus_per_node, time=time, container_image=container_image,
        container_mounts=list(container_mounts or []), tunnel=tunnel,
        env_vars={"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env_vars or {})},
    )
