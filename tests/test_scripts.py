"""The scripts in scripts/ run as documented."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_token_benchmark_runs_and_checks_the_ids(fixture_model):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_tokens.py"),
                             str(fixture_model), "--mb", "0.05", "--repeats", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "identical ids" in result.stdout and "speed-up" in result.stdout
    assert result.stdout.count("identical ids") == 2  # the counter and the chat prompt
