"""`python -m evolve` and the `evolve` command: the CLI, started with the cycle collector paused.

Importing the CLI creates thousands of objects that live as long as the process (modules,
classes, functions). Collecting while they are created only walks them again and again (about a
tenth of `evolve --help`), so the collector is paused for the import, and what it created is
frozen out of later collections; every command then runs with the collector on.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from evolve.cli import app
    finally:
        gc.freeze()
        gc.enable()
    app(prog_name="evolve")


if __name__ == "__main__":
    main()
