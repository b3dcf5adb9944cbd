"""Run `sidbench ARGV` in-process for a test (not a test module)."""

from __future__ import annotations

from sidbench.cli import main


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `sidbench ARGV`: argparse errors exit 2, user errors return 1."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err
