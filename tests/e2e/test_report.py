"""`selfalign report`: the HTML page renders in real headless Chromium, offline, with its charts drawn."""

import json
import os
import shutil
import subprocess

import pytest

from support import run_cli, write_jsonl

GOOD = "Tides come from the Moon's gravity pulling on the oceans, so most coasts see two high tides a day."


@pytest.fixture
def dataset(tmp_path):
    prompts = [{"id": f"p{i}", "prompt": f"Question {i} about the sea?", "source": "red-team" if i % 2 else "self-instruct",
                "question_type": "real-time information" if i % 2 else None, "topic": "tides" if i % 2 else None}
               for i in range(6)]
    aligned = [{**p, "thoughts": "By 2 (informative) and 8 (knowledge recitation).", "response": GOOD,
                "principles": ["2", "8"] if i % 2 else ["2"]} for i, p in enumerate(prompts[:4])]
    dropped = [{"id": "p4", "stage": "principle", "drop_reason": "too_short", "detail": "40 chars < 160",
                "record": prompts[4]},
               {"id": "p5", "stage": "principle", "drop_reason": "unwarranted_refusal", "detail": "I'm sorry", "record": prompts[5]}]
    files = [write_jsonl(tmp_path / "prompts.jsonl", prompts), write_jsonl(tmp_path / "aligned.jsonl", aligned),
             write_jsonl(tmp_path / "principle-dropped.jsonl", dropped)]
    (tmp_path / "principle.json").write_text(json.dumps({"stage": "principle", "read": 6, "kept": 4}))
    files.append(tmp_path / "principle.json")
    return [str(f) for f in files]


def test_json_and_text_formats(dataset):
    data = json.loads(run_cli("report", *dataset, "--format", "json").stdout)
    assert data["pipeline"]["prompts"] == 6 and data["pipeline"]["aligned"] == 4
    assert data["dropped"] == {"principle": {"too_short": 1, "unwarranted_refusal": 1}}
    assert data["principles_cited"] == {"2": 4, "8": 2}
    assert data["principles_by_question_type"]["real-time information"] == {"2": 2, "8": 2}
    assert data["question_types"] == {"real-time information": 3}
    assert data["stage_reports"][0]["kept"] == 4
    text = run_cli("report", *dataset, "--format", "text").stdout
    assert "principle dropped: too_short" in text and "real-time information" in text


def test_html_page_draws_its_charts_in_headless_chromium(dataset, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    run_cli("report", *dataset, "-o", str(page))
    html = page.read_text()
    assert "<script src=" not in html and "<link " not in html  # self-contained: nothing to fetch
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([browser, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<td>principle</td><td>6</td><td>4</td>" in html  # the stage report's counts
    charts = html.count('class="chart"')
    assert charts >= 5
    assert dom.stdout.count('class="main-svg"') >= charts  # plotly drew an SVG in every chart
    assert "Uncaught" not in dom.stderr and ":ERROR:CONSOLE" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("SELFALIGN_ARTIFACTS"):  # keep the screenshot where a person can look at it
        os.makedirs(os.environ["SELFALIGN_ARTIFACTS"], exist_ok=True)
        shutil.copy(shot, os.path.join(os.environ["SELFALIGN_ARTIFACTS"], "report.png"))
