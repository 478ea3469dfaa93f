"""What a bug report should carry: versions, backends, GPUs, BLAS threads, ``BPCORE_*`` settings.

``bpcore info`` prints it (``--json`` for the dictionary itself), as ``sklearn.show_versions()``
and ``python -m torch.utils.collect_env`` do for their projects. Collecting it imports every
installed backend, which ``import bpcore`` never does.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from collections.abc import Collection
from typing import Any

from .backends import BACKEND_CLASSES
from .version import __version__

__all__ = ["environment_info", "format_environment"]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dependencies() -> list[str]:
    """The names of bpcore's own requirements (not its extras'), from its installed metadata."""
    try:
        requires = importlib.metadata.requires("bpcore") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return []
    names = [
        re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0] for req in requires if "extra" not in req
    ]
    return sorted(set(names))


def _threadpools() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process and their thread counts."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # a dependency; missing only in a broken install
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "filepath")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def _cpu_model() -> str:
    """The processor's name: Linux's /proc/cpuinfo, else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(backends: Collection[str] | None = None) -> dict[str, Any]:
    """Collect the environment report as a dictionary that `json.dumps` can write.

    Parameters
    ----------
    backends : collection of str, optional
        Report only these backends (by default every one bpcore knows): a report of a NumPy
        run need not import JAX, which on a GPU would reserve most of its memory.

    Returns
    -------
    dict
        ``bpcore``, ``python``, ``implementation``, ``executable``, ``platform``, ``machine``,
        ``cpu_model``, ``cpus``; ``packages``: the versions of bpcore's own dependencies (None
        when missing);
        ``backends``: per installed backend, its version and devices, and where the library
        sees them, GPUs with their memory and the CUDA versions, and the settings that let
        float32 products round to TF32 on NVIDIA GPUs; ``not_installed``;
        ``threadpools``: threadpoolctl's report, taken after every backend is imported so that
        their BLAS and OpenMP libraries are in it; ``environment``: the ``BPCORE_*`` variables
        that are set.

    Examples
    --------
    >>> import bpcore
    >>> info = bpcore.environment_info()
    >>> info["backends"]["numpy"]["devices"]
    ['cpu']
    """
    found: dict[str, Any] = {}
    missing = []
    for name, cls in BACKEND_CLASSES.items():
        if backends is not None and name not in backends:
            continue
        try:
            xp = cls.import_namespace()
        except ImportError:
            missing.append(name)
            continue
        except Exception as exc:  # a broken install (a jaxlib that does not match jax, CUDA
            # libraries missing under torch) is what a bug report is for: say what broke
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        try:
            found[name] = cls.report(xp)
        except Exception as exc:  # a broken driver, likewise
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "bpcore": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "packages": {name: _version(name) for name in _dependencies()},
        "backends": found,
        "not_installed": missing,
        "threadpools": _threadpools(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("BPCORE_")},
    }


def format_environment(info: dict[str, Any]) -> str:
    """The report of `environment_info` as the lines ``bpcore info`` prints."""
    lines = [
        f"bpcore {info['bpcore']}",
        f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
        f"{info['cpus']} CPUs ({info['cpu_model']})",
        "packages: "
        + ", ".join(f"{k} {v or 'not installed'}" for k, v in info["packages"].items()),
        "backends:",
    ]
    for name, found in info["backends"].items():
        if "error" in found:
            lines.append(f"  {name}: {found['error']}")
            continue
        devices = ", ".join(found["devices"]) or "no device"
        keys = ("jaxlib", "threads", "cuda_runtime", "cuda_driver")
        extra = [f"{k.replace('_', ' ')} {found[k]}" for k in keys if found.get(k) is not None]
        lines.append(f"  {name} {found['version']}: {devices}" + "".join(f"; {e}" for e in extra))
        for g in found.get("gpus", []):
            memory = "" if g["memory_gib"] is None else f", {g['memory_gib']} GiB"
            if g.get("jax_memory_limit_gib") is not None:
                memory += f", JAX may allocate {g['jax_memory_limit_gib']} GiB"
            lines.append(f"    GPU: {g['name']}{memory}")
        if "cuda_error" in found:
            lines.append(f"    CUDA: {found['cuda_error']}")
        precision = [
            f"{k} {found[k]}"
            for k in (
                "float32_matmul_precision",
                "cuda_matmul_allow_tf32",
                "cudnn_allow_tf32",
                "default_matmul_precision",
                "CUPY_TF32",
            )
            if k in found
        ]
        if precision:
            lines.append(f"    matmul: {', '.join(precision)}")
    if info["not_installed"]:
        lines.append(f"  not installed: {', '.join(info['not_installed'])}")
    lines.append("threads (threadpoolctl):")
    lines += [
        f"  {p['user_api']} {p['internal_api']} {p['version']}: {p['num_threads']} threads "
        f"({p['filepath']})"
        for p in info["threadpools"]
    ] or ["  none reported"]
    lines.append("environment:")
    lines += [f"  {k}={v}" for k, v in info["environment"].items()] or [
        "  no BPCORE_* variable set"
    ]
    return "\n".join(lines)
