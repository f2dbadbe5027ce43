"""The command line, ``convirza-import`` (and ``python -m importer``): each command parses its
arguments, builds ``Settings``, calls one library function and maps what happens to an exit
code. Its grammar is in ``parser``, the stopping on signals in ``stopping``, the standard
streams that never end the work in ``streams``; the command line imports no aiohttp and no
sqlite3."""

from .commands import exit_code_for, main
from .parser import build_parser

__all__ = ["build_parser", "exit_code_for", "main"]
