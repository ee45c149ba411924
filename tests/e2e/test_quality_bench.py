"""The quality benchmark runs end to end (real openai backend, local server) on a stratified sample."""

import json
import subprocess
import sys

from support import ROOT


def test_quality_benchmark_on_a_sample_accounts_for_every_record_and_keeps_clean_answers(tmp_path):
    out = tmp_path / "q.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--set", "written", "--sample", "200",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["n"] >= 40 and res["bad"] and res["good"]
    assert not res["lost"] and not res["unclean_kept"]
    assert res["precision"] >= 0.9 and res["recall"] >= 0.9, proc.stdout
    assert "detection rate per category" in proc.stdout and "false-drop rate per category" in proc.stdout
