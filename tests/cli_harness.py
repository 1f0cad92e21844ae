"""Run many command lines in one Python process, for the tests of their one-line error messages.

Each case is ``{"module": "klcourse", "argv": [...], "env": {...}}``: the module runs as
``python -m module argv…`` would run it (``runpy``, as ``__main__``), with ``env`` added to the
environment for that case alone. Its exit status and what it wrote to stderr are collected; an
exception that escapes is recorded with its traceback, as the interpreter would print it. The
cases come as JSON on stdin and the results go out as JSON on stdout, one per case, in order.
Importing torch and transformers once instead of once per case is what makes this fast.
"""

import contextlib
import io
import json
import os
import runpy
import signal
import sys
import traceback

#: A case that does not fail at once (a validation bug) is stopped here instead of training.
CASE_SECONDS = 60


def _timeout(signum, frame):
    raise TimeoutError(f"the command did not stop within {CASE_SECONDS} s")


def run_case(module: str, argv: list[str], env: dict[str, str]) -> dict:
    saved_env, saved_argv = dict(os.environ), sys.argv
    os.environ.update(env)
    sys.argv = [module, *argv]
    err = io.StringIO()
    status: int | str = 0
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if isinstance(code, str):
            err.write(code + "\n")
    except BaseException:  # any escape is what the test must see, traceback and all
        status = 1
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return {"status": status, "stderr": err.getvalue()}


def main() -> None:
    signal.signal(signal.SIGALRM, _timeout)
    cases = json.load(sys.stdin)
    results = [run_case(c["module"], c["argv"], c.get("env", {})) for c in cases]
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
