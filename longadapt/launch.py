"""Make ``accelerate launch --cpu --num_processes N -m longadapt pretrain|adapt ...`` start N processes.

accelerate (1.x) runs several CPU processes only through ``mpirun`` (``--mpirun_hostfile``); without a
host file its CPU launcher starts ONE process, whatever ``--num_processes`` says, and the run silently
trains on one process with the wrong batch arithmetic. It still marks the request in the environment
(``ACCELERATE_USE_CPU`` plus ``MASTER_ADDR``/``MASTER_PORT``, which it sets only for N > 1) and its
own command line holds N. When a ``longadapt`` training command finds itself in that situation it
starts N workers itself with ``torch.distributed.run`` (gloo, the same address and port), and waits for
them: the workers see ``WORLD_SIZE=N`` and accelerate sets them up as a normal multi-CPU run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)

WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
RELAUNCHED = "LONGADAPT_CPU_WORKERS"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def env_world_size(environ: dict[str, str] | None = None) -> int:
    """The process count a launcher gave this process: torchrun-style WORLD_SIZE, or mpirun's own
    variables (accelerate reads both); 1 without a launcher."""
    env = os.environ if environ is None else environ
    return next((int(env[k]) for k in WORLD_SIZE_VARS if env.get(k, "").strip().isdigit()), 1)


def cpu_launch_without_workers(environ: dict[str, str] | None = None) -> bool:
    """accelerate's CPU launcher was asked for several processes (it then sets MASTER_ADDR) but this
    process runs alone."""
    env = os.environ if environ is None else environ
    return env_world_size(env) == 1 and bool(env.get("MASTER_ADDR")) and _truthy(env.get("ACCELERATE_USE_CPU"))


def num_processes_from_launch_argv(argv: Sequence[str]) -> int | None:
    """The process count an ``accelerate launch`` command line asks for (flag or config file), or None.

    ``argv`` is the launcher's own command line, e.g. ``[python, .../accelerate, launch, --cpu,
    --num_processes, 2, -m, longadapt, pretrain, x.yaml]`` or ``[python, -m,
    accelerate.commands.launch, ...]``.
    """
    argv = list(argv)
    start = None
    for i, arg in enumerate(argv):
        if arg == "launch" and i > 0 and "accelerate" in os.path.basename(argv[i - 1]):
            start = i + 1
            break
        if arg.endswith("accelerate.commands.launch"):
            start = i + 1
            break
    if start is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    try:
        args, _ = launch_command_parser().parse_known_args(argv[start:])
    except SystemExit:  # argparse refused the line: not ours to interpret
        return None
    if args.num_processes is not None:
        return int(args.num_processes)
    try:  # no flag: accelerate takes it from the config file (explicit, else the default one)
        from accelerate.commands.config import default_config_file
        from accelerate.commands.config.config_args import load_config_from_file

        path = args.config_file or default_config_file
        if path and os.path.isfile(path):
            n = getattr(load_config_from_file(path), "num_processes", None)
            return int(n) if n else None
    except Exception:  # an unreadable config file is accelerate's to report
        return None
    return None


def requested_cpu_processes(environ: dict[str, str] | None = None, parent_argv: Sequence[str] | None = None) -> int:
    """N > 1 when accelerate's CPU launcher was asked for N processes but started only this one; else 1."""
    env = os.environ if environ is None else environ
    if env.get(RELAUNCHED) or not cpu_launch_without_workers(env):
        return 1
    if any(env.get(k) for k in (*WORLD_SIZE_VARS, "RANK", "LOCAL_RANK")):
        return 1  # a real multi-process launcher (torchrun, mpirun) is already in charge
    if not env.get("MASTER_PORT"):
        return 1  # accelerate sets the address and port only when more than one process was asked for
    if parent_argv is None:
        try:
            import psutil  # a dependency of accelerate

            parent_argv = psutil.Process(os.getppid()).cmdline()
        except Exception:
            return 1
    n = num_processes_from_launch_argv(parent_argv)
    return n if n and n > 1 else 1


def relaunch_cpu_workers(n: int, argv: Sequence[str]) -> int:
    """Run ``longadapt ARGV`` as ``n`` gloo workers (torch.distributed.run); return their exit status."""
    env = dict(os.environ)
    env[RELAUNCHED] = str(n)
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc_per_node", str(n),
        "--master_addr", env["MASTER_ADDR"], "--master_port", env["MASTER_PORT"],
        "-m", "longadapt", *argv,
    ]
    logger.info("accelerate launch --cpu started one process for --num_processes %d (its CPU launcher needs "
                "mpirun for more); starting %d gloo workers with torch.distributed.run", n, n)
    return subprocess.call(cmd, env=env)
