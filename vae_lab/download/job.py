"""A download on a background thread, for UIs."""

from __future__ import annotations

import logging
import threading
from typing import Any

from vae_lab.download.result import DownloadResult
from vae_lab.download.transfer import download
from vae_lab.errors import DownloadCancelled, DownloadError, VaeLabError

log = logging.getLogger("vae_lab.download")


class DownloadJob:
    """A download on a background thread, for UIs: poll `status()`, call `cancel()`.

        job = DownloadJob("sdxl-vae-fp16-fix", vae_dir, tokens=policy, on_done=refresh).start()
        job.status()  # {"state": "running", "done_bytes": …, "total_bytes": …, "fraction": …}
    """

    def __init__(self, source: str, dest_dir=None, **kwargs):
        self.source, self.dest_dir, self.kwargs = source, dest_dir, kwargs
        self.kwargs.setdefault("console", False)
        self._user_progress = self.kwargs.pop("progress", None)
        self._cancel = threading.Event()
        self.done_bytes, self.total_bytes = 0, None
        self.result: DownloadResult | None = None
        self.exception: DownloadError | None = None
        self._thread = threading.Thread(target=self._run, name=f"vae-lab-download {source}", daemon=True)

    def start(self) -> DownloadJob:
        self._thread.start()
        return self

    def _progress(self, done: int, total: int | None) -> None:
        self.done_bytes, self.total_bytes = done, total
        if self._user_progress is not None:
            self._user_progress(done, total)

    def _run(self) -> None:
        try:
            self.result = download(self.source, self.dest_dir, progress=self._progress, cancel=self._cancel,
                                   **self.kwargs)
        except DownloadError as err:
            self.exception = err
        except VaeLabError as err:
            self.exception = DownloadError(str(err))
        except Exception as err:  # keep the UI alive; the message is still one line
            log.exception("download of %s failed unexpectedly", self.source)
            self.exception = DownloadError(f"unexpected error: {type(err).__name__}")

    @property
    def error(self) -> str | None:
        return str(self.exception) if self.exception is not None else None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.exception, DownloadCancelled)

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        if self.running or (self.result is None and self.exception is None):
            state = "running"
        elif self.result is not None:
            state = "done"
        else:
            state = "cancelled" if self.cancelled else "failed"
        total = self.total_bytes
        return {
            "state": state, "source": self.source, "done_bytes": self.done_bytes, "total_bytes": total,
            "fraction": (self.done_bytes / total) if total else None, "error": self.error,
            "kept_bytes": getattr(self.exception, "kept_bytes", 0) if self.exception is not None else 0,
            "result": self.result.to_dict() if self.result is not None else None,
        }
