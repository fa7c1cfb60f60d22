"""The `tiss` entry point itself: help, version, usage errors."""

import subprocess
import sys

import pytest

from runtime import cli


def test_version_names_distribution_and_language(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("tiss ") and "TissLang 1.0" in out


def test_no_subcommand_is_a_usage_error(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: tiss" in capsys.readouterr().err


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2


def test_python_dash_m_runtime_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "runtime", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "usage: tiss" in proc.stdout
