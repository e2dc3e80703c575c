"""What went wrong, in one line: the error a failed local run reports instead of a traceback.

A user's mistake (a bad file, a bad setting) surfaces wrapped in Beam's or TFX's
exceptions; a tracking server that stopped answering or a full disk surface as whatever
the library hit. These functions find the cause in the exception chain and say what to
do about it; anything else is a bug, and its traceback is shown.
"""

from __future__ import annotations

import errno
import os
import resource
from typing import Iterator, Optional

from components.runtime.errors import UserInputError

# What a full or read-only disk raises, wherever it is hit.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def explain(error: BaseException, tracking_uri: str) -> Optional[str]:
    """The one-line message for `error` (without "error: "), or None for a bug."""
    user_error = root_user_error(error)
    if user_error is not None:
        return str(user_error)
    from components.tracking.mlflow_runs import check_reachable  # pylint: disable=import-outside-toplevel  (imports MLflow)

    unreachable = check_reachable(tracking_uri, timeout_s=2)
    if unreachable is not None:
        return (
            f"the MLflow tracking server {tracking_uri} stopped answering ({unreachable}). Finished components "
            "are cached, a trained model is kept: start the server and run the same command again."
        )
    disk = disk_problem(error)
    if disk is not None:
        return f"{disk}; {_disk_advice()}. Finished components are cached: the same command resumes."
    return None


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions behind it (causes, else contexts), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def root_user_error(error: BaseException) -> Optional[UserInputError]:
    """The UserInputError behind `error`, if any (Beam and TFX may wrap it)."""
    return next((e for e in exception_chain(error) if isinstance(e, UserInputError)), None)


def disk_problem(error: BaseException) -> Optional[str]:
    """`<what> writing <file>` if a full or read-only disk is behind `error`, else None."""
    for e in exception_chain(error):
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return f"{os.strerror(e.errno)} writing {e.filename or 'a file'}"
        if "database or disk is full" in str(e):  # SQLite (MLflow's and ML Metadata's stores)
            return "disk full writing a SQLite store (MLflow or ML Metadata)"
        # What SQLite says when a write passes the file size limit (EFBIG).
        if "disk I/O error" in str(e) and file_size_limit() is not None:
            return "I/O error writing a SQLite store (MLflow or ML Metadata)"
    return None


def file_size_limit() -> Optional[int]:
    """The largest file this process may write (`ulimit -f`), in bytes; None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _disk_advice() -> str:
    limit = file_size_limit()
    if limit is not None:
        return f"raise this shell's file size limit (`ulimit -f`, now {limit // 1024} KiB), or free space"
    return "free space, or point output_dir and pipeline_root at another disk"
