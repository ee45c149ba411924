"""The `selfalign` command: a thin typer layer wiring files, options and progress to the stages.

`app.py` holds the shared options and the run's display, `options.py` makes a command's options from the
fields that declare them (a stage's, the backend's), `models.py` holds the model commands (generate, principle,
refine, critique, judge), `data.py` the others (dedup, export, run, report, cache). Heavy packages (torch,
transformers, vllm, sentence-transformers) are imported only inside commands.
"""

from __future__ import annotations

import signal
import sys

from selfalign.cli import models  # noqa: F401, I001 - the commands register on `app`; this order is --help's
from selfalign.cli import data  # noqa: F401
from selfalign.cli.app import app, console
from selfalign import runner
from selfalign.runner import Terminated, on_sigterm

__all__ = ["app", "main"]


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app()
    except SystemExit as e:  # typer turns an interrupt outside a stage's loop into exit 130
        if e.code == 130 and runner.TERMINATED:
            console.print("[yellow]terminated[/]")
            sys.exit(143)
        raise
    except KeyboardInterrupt as e:  # outside a stage's loop (loading a model): nothing was written
        console.print("[yellow]terminated[/]" if isinstance(e, Terminated) else "[yellow]interrupted[/]")
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:  # noqa: BLE001 - a bug: one line here, the traceback in a log file
        from rich.markup import escape

        from selfalign.io import crashlog

        where = crashlog.write(e)
        console.print(f"[red]error:[/] {escape(crashlog.one_line(e))} (a selfalign bug; traceback: {where})",
                      highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
