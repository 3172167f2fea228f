"""Explicit, opt-in changes to the process's JAX setup: use every CPU core, and JAX's persistent
compilation cache. The library never calls these by itself; scripts do, and notebooks may.

Importing this module does not import JAX, so :func:`use_all_cores` can run first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "JAXOPT_CMP_CACHE_DIR"
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def host_available_bytes() -> float:
    """The host's available memory (``MemAvailable``), without starting JAX."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _jax_backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def use_all_cores(count: int | None = None) -> int:
    """One XLA host device per CPU core (or ``count``), so a study's seed axis runs on every core
    (XLA:CPU runs the shards of separate host devices in parallel). Call it before JAX starts its
    backend — in a notebook, in the first cell. ``XLA_FLAGS`` the user set win. Returns the count
    in effect; raises ``RuntimeError`` if JAX has already started with another count."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_FLAG in flags:
        return int(flags.split(_DEVICE_FLAG + "=")[1].split()[0])
    count = count or cpu_count()
    if _jax_backend_started():
        import jax

        if jax.device_count() != count and jax.default_backend() == "cpu":
            raise RuntimeError(
                f"JAX already runs with {jax.device_count()} CPU device(s); call use_all_cores() before "
                "any JAX computation (restart the kernel and call it in the first cell)"
            )
        return jax.device_count()
    os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
    return count


def default_cache_dir() -> Path:
    """``$JAXOPT_CMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxopt_cmp``, else ``~/.cache/jaxopt_cmp``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxopt_cmp"


def use_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Turns on JAX's persistent compilation cache in ``path`` (default :func:`default_cache_dir`):
    a rerun with the same shapes loads the compiled study from disk instead of compiling it."""
    import jax

    path = Path(path) if path is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
