"""Files and facts at the edge: output directories (claimed by one writer), atomic writes, one
JSON policy for non-finite numbers, one table writer, software versions and peak memory.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from jaxopt_cmp.checks import ConfigError

LOCK_NAME = ".jaxopt_cmp.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Writes ``payload`` to a temporary sibling, fsyncs it and renames it over ``path``: a reader
    sees the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_npz(path: str | os.PathLike, **arrays) -> Path:
    """A compressed ``.npz`` of ``arrays``, written whole or not at all (:func:`atomic_write_bytes`)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike) -> dict:
    """Every array of an ``.npz`` file, read in full (no pickles). ``OSError`` if it cannot be
    opened; ``ValueError`` naming what went wrong for anything else: a truncated or corrupt file
    fails inside numpy, zipfile or zlib with their own exception types (``BadZipFile``,
    ``zlib.error``, ``TokenError``, ``EOFError``...), all of them reported as one."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure of the file's bytes
        raise ValueError(f"not a readable .npz file: {type(err).__name__}: {err}") from None


def json_safe(value):
    """JSON's policy for non-finite floats, everywhere: +inf -> "inf", -inf -> "-inf", NaN -> None
    (strict JSON, readable by any parser); numpy arrays and scalars become lists and numbers.
    :func:`json_restore` inverts the strings."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_restore(value):
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


def dumps(doc) -> str:
    return json.dumps(json_safe(doc), indent=1, allow_nan=False)


def format_table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """A fixed-width plain table, or a Markdown table (``|`` in cells escaped)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    if markdown:
        esc = lambda r: "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
        return "\n".join([esc(cells[0]), "|" + "---|" * len(header)] + [esc(r) for r in cells[1:]])
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


class Table:
    """A small table that prints as fixed-width text and renders as HTML in a notebook."""

    def __init__(self, header: list[str], rows: list[list]):
        self.header, self.rows = list(header), [list(r) for r in rows]

    def __str__(self) -> str:
        return format_table(self.header, self.rows)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        cell = lambda tag, c: f"<{tag}>{html.escape(str(c))}</{tag}>"
        head = "".join(cell("th", c) for c in self.header)
        body = "".join("<tr>" + "".join(cell("td", c) for c in r) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def versions() -> dict[str, str]:
    """Versions of the software and the device a result came from."""
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": jax.devices()[0].device_kind,
        "device_count": str(jax.device_count()),
        "process_count": str(jax.process_count()),
        "platform": jax.default_backend(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


class OutputDir:
    """An output directory claimed by this process: an exclusive lock (``flock``) on a marker file
    inside it, taken atomically before anything is checked or written, so a second writer fails
    at once instead of silently overwriting or mixing results. Release with :meth:`release` (or
    use as a context manager); a crashed process releases it with its file descriptors."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim_out_dir(path: str | os.PathLike, overwrite: bool = False, outputs: tuple[str, ...] = ()) -> OutputDir:
    """Creates ``path`` (or takes it empty, or with ``overwrite`` removes the ``outputs`` a previous
    run left there, ``results.json`` first, and the parts of them a killed writer left) and locks it
    for this process; ``ConfigError`` (setting ``out``) if it is a file, not writable, non-empty
    without ``overwrite``, or claimed by another run."""
    import fcntl

    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError("out", str(out), "expected a directory path, not a file")
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as err:
        why = "name too long" if err.errno == errno.ENAMETOOLONG else err.strerror
        raise ConfigError("out", str(out), f"expected a writable directory ({why})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError("out", str(out), "another run is writing into this directory; choose another --out") from None
    claimed = OutputDir(out, fd)
    os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    try:
        others = [p for p in out.iterdir() if p.name != LOCK_NAME]
        if others and not overwrite:
            raise ConfigError("out", str(out), "directory exists and is not empty (pass --overwrite)")
        if overwrite:
            for name in sorted(outputs, key=lambda n: n != "results.json"):
                (out / name).unlink(missing_ok=True)
                for tmp in out.glob(f".{name}.*.tmp"):  # a part a killed writer left (atomic_write_bytes)
                    tmp.unlink(missing_ok=True)
    except BaseException:
        claimed.release()
        raise
    return claimed


def unique_run_dir(root: str | os.PathLike, prefix: str) -> Path:
    """``root/<prefix>-<time>-<pid>``: distinct for runs started in the same second."""
    return Path(root) / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
