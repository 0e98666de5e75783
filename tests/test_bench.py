"""The benchmark suite as a smoke test: every benchmark runs at tiny sizes and reports figures.

No timing is asserted here (CI machines are shared and noisy); the goals are checked by reading a full run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import ROOT, cli_env

from bench.capture import messages, write_capture


def test_every_benchmark_runs_and_reports_figures(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
        env=cli_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["quick"] is True and report["machine"]["cpus"] >= 1
    results = {r["id"]: r for r in report["results"]}
    assert sorted(results) == ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
    for result in results.values():
        assert result["figures"] and result["met"] is not None, result
        assert f"| {result['id']} " in proc.stdout
    assert results["B2"]["figures"]["most_polls_in_flight"] == 1
    assert results["B6"]["figures"]["transcript_lines"] == 1_000
    assert results["B7"]["figures"]["runs"][0]["lines_repeated"] == 0


def test_the_capture_is_seeded_and_exactly_half_text(tmp_path: Path) -> None:
    first = write_capture(tmp_path / "a.ndjson", 1_002).read_bytes()
    assert first == write_capture(tmp_path / "b.ndjson", 1_002).read_bytes()
    kinds = Counter(m["__type"].rsplit(":", 1)[1] for m in messages(1_002))
    assert kinds == {"chatMembersMessage": 501, "chatContentsMessage": 501}
