"""`selfalign report` on preference data: violation rates per principle, revision rate, the judge's win rate of
revisions and its margins, from critique and judge outputs with known numbers."""

import json

import pytest

from support import run_cli, write_jsonl

ANSWER = "Tides come from the Moon's gravity pulling on the oceans, so most coasts see two high tides a day."


def aligned(i: int, **extra) -> dict:
    return {"id": f"p{i}", "prompt": f"Question {i} about the sea?", "source": "self-instruct",
            "thoughts": "By 2 (informative).", "response": ANSWER, "principles": ["2"], **extra}


def critiqued(i: int, checked: list[str], violations: list[str], revision: str | None) -> dict:
    return aligned(i, checked_principles=checked, violations=violations, critique="Short critique of the answer.",
                   revision=revision)


def judged(i: int, chosen: str, margin: float | None, method: str = "logprobs", sampled: bool = False) -> dict:
    pair = ["responses[0]", "responses[1]"] if sampled else ["response", "revision"]
    score = None if margin is None else (margin if chosen in ("revision", "responses[1]") else -margin)
    verdict = {"principle": "all", "score": score, "margin": margin, "chosen": chosen, "pair": pair, "method": method}
    if sampled:  # two sampled answers: no thoughts, no critique
        return {"id": f"s{i}", "prompt": f"Sampled question {i}?", "responses": [ANSWER, ANSWER + " Really."],
                "judge": verdict}
    # a judged revision pair is a critiqued record too (judge reads critique's output)
    return {**critiqued(i, ["2", "5"], ["5"], "A revised answer."), "judge": verdict}


@pytest.fixture
def dataset(tmp_path):
    crit = [critiqued(0, ["2", "5"], ["5"], "Revised answer zero."),
            critiqued(1, ["5", "2"], ["2", "5"], "Revised answer one."),
            critiqued(2, ["2"], [], None)]
    judge = [judged(0, "response", 0.1), judged(1, "revision", 1.5), judged(2, "revision", 5.0),
             judged(3, "tie", 0.0),
             judged(4, "responses[1]", 0.2, "vote", sampled=True), judged(5, "responses[0]", 0.6, "vote", sampled=True),
             judged(6, "tie", None, "vote", sampled=True)]
    dropped = [{"id": "p9", "stage": "critique", "drop_reason": "critique_unparsed", "detail": "no 'Violations:' line",
                "record": aligned(9)},
               {"id": "p2", "stage": "judge", "drop_reason": "no_pair", "record": crit[2],
                "detail": "no revision: the critique found nothing to revise"}]
    files = [write_jsonl(tmp_path / "aligned.jsonl", [aligned(i) for i in range(3)]),
             write_jsonl(tmp_path / "critique.jsonl", crit), write_jsonl(tmp_path / "judge.jsonl", judge),
             write_jsonl(tmp_path / "dropped.jsonl", dropped)]
    return [str(f) for f in files]


def test_preference_metrics_in_json(dataset):
    data = json.loads(run_cli("report", *dataset, "--format", "json").stdout)
    # the same prompts pass through aligned, critique and judge files: each file counted as what it is, once
    assert {k: data["pipeline"][k] for k in ("prompts", "aligned", "critiqued", "judged")} == {
        "prompts": 0, "aligned": 3, "critiqued": 3, "judged": 7}
    prefs = data["preferences"]
    # the judged records carry checked_principles too; they count as judged only, not critiqued again
    c = prefs["critiqued"]
    assert (c["records"], c["revised"]) == (3, 2)
    assert c["revision_rate"] == pytest.approx(2 / 3)
    assert c["principles"] == {"2": {"checked": 3, "violated": 1, "rate": pytest.approx(1 / 3)},
                               "5": {"checked": 2, "violated": 2, "rate": 1.0}}
    assert list(c["principles"]) == ["2", "5"]

    j = prefs["judged"]
    assert j["records"] == 7
    assert j["pairs"] == {"revision": 4, "sampled": 3}
    rv = j["revision_vs_original"]
    assert (rv["pairs"], rv["revision"], rv["response"], rv["tie"]) == (4, 2, 1, 1)
    assert rv["win_rate"] == 0.5  # ties are in the denominator, not wins
    assert "ties" in rv["note"]

    lp, vote = j["margins"]["logprobs"], j["margins"]["vote"]
    assert (lp["n"], lp["no_margin"], lp["min"], lp["max"]) == (4, 0, 0.0, 5.0)
    assert lp["median"] == pytest.approx(0.8) and lp["mean"] == pytest.approx(6.6 / 4)
    assert lp["histogram"] == {"0-0.25": 2, "0.25-0.5": 0, "0.5-1": 0, "1-2": 1, "2-4": 0, "4+": 1}
    assert (vote["n"], vote["no_margin"]) == (2, 1)
    assert vote["median"] == pytest.approx(0.4) and vote["mean"] == pytest.approx(0.4)
    assert vote["histogram"] == {"0-0.25": 1, "0.25-0.5": 0, "0.5-1": 1, "1-2": 0, "2-4": 0, "4+": 0}
    assert "bounded by its number of votes" in j["margin_note"]

    # the stages' drops still show through the dropped counts
    assert data["dropped"] == {"critique": {"critique_unparsed": 1}, "judge": {"no_pair": 1}}


def test_preferences_in_text_and_html(dataset, tmp_path):
    text = run_cli("report", *dataset, "--format", "text").stdout
    assert "preferences: 3 critiqued records, 2 revised (66.7%)" in text
    assert "preferences: critique, by principle" in text
    assert "preferences: judge (7 records)" in text and "preferences: judge margins" in text
    assert "revision chosen" in text and "50.0%" in text
    assert "bounded by its number of votes" in text  # both methods appear
    assert "critique dropped: critique_unparsed" in text

    page = tmp_path / "report.html"
    run_cli("report", *dataset, "-o", str(page))
    html = page.read_text()
    assert "<h2>Preferences</h2>" in html
    assert "<tr><td>5</td><td>2</td><td>2</td><td>100.0%</td></tr>" in html
    assert "<tr><td>2</td><td>3</td><td>1</td><td>33.3%</td></tr>" in html
    assert "Revision over original: 2 of 4 (50.0%), original 1, tie 1" in html
    assert "<tr><td>logprobs</td><td>4</td><td>0</td>" in html
    assert "Judge margins, by method" in html  # the histogram chart


def test_no_preference_data_no_section(tmp_path):
    files = [str(write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Why is the sea salty?"}])),
             str(write_jsonl(tmp_path / "aligned.jsonl", [aligned(0)]))]
    data = json.loads(run_cli("report", *files, "--format", "json").stdout)
    assert data["preferences"] == {}
    assert data["pipeline"]["aligned"] == 1
    assert "preferences" not in run_cli("report", *files, "--format", "text").stdout
    page = tmp_path / "report.html"
    run_cli("report", *files, "-o", str(page))
    html = page.read_text()
    assert "<h2>Preferences</h2>" not in html and "Judge margins" not in html
