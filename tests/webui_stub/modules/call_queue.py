"""The generation lock (modules/call_queue.py).

`queue_lock` is NOT re-entrant, as in the real WebUI. Where the real one would hang forever when
the thread that holds it asks for it again (e.g. `opts.set('sd_vae', …)` with callbacks during a
generation), this one raises `DeadlockError`, so a test fails instead of hanging.
"""

import html
import threading
import time

from modules import errors, shared


class DeadlockError(RuntimeError):
    pass


class FIFOLock:
    def __init__(self):
        self._lock = threading.Lock()
        self._owner = None
        self.acquisitions = 0  # stand-in only

    def acquire(self, blocking=True, timeout=-1):
        if self._owner == threading.get_ident():
            raise DeadlockError("queue_lock is not re-entrant: this thread already holds it (the real WebUI would hang here)")
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self._owner = threading.get_ident()
            self.acquisitions += 1
        return ok

    def release(self):
        self._owner = None
        self._lock.release()

    def locked(self):
        return self._lock.locked()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.release()


queue_lock = FIFOLock()


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            res = func(*args, **kwargs)
        return res
    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    def f(*args, **kwargs):
        if args and isinstance(args[0], str) and args[0].startswith("task(") and args[0].endswith(")"):
            id_task = args[0]
        else:
            id_task = None
        with queue_lock:
            shared.state.begin(job=id_task or "(unknown)")
            try:
                res = func(*args, **kwargs)
            finally:
                shared.state.end()
        return res
    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    def f(*args, extra_outputs_array=extra_outputs, **kwargs):
        t = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            errors.report("Error completing request", exc_info=True)
            if extra_outputs_array is None:
                extra_outputs_array = [None, '']
            error_message = f'{type(e).__name__}: {e}'
            res = extra_outputs_array + [f"<div class='error'>{html.escape(error_message)}</div>"]
        shared.state.skipped = False
        shared.state.interrupted = False
        shared.state.stopping_generation = False
        shared.state.job_count = 0
        if not add_stats:
            return tuple(res)
        elapsed = time.perf_counter() - t
        res[-1] += f"<div class='performance'><p class='time'>Time taken: <wbr><span class='measurement'>{elapsed:.1f} sec.</span></p></div>"
        return tuple(res)
    return f
