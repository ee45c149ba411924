"""`selfalign report`: one view of a dataset across stages, as a self-contained HTML page, text or JSON.

Counts stream over every line; examples and lengths come from fixed-size reservoir samples, so memory
stays bounded on million-record files. Charts are plotly figures with plotly.js inlined (works offline).

Preference data (the output of `critique` and `judge`) adds a "preferences" part: how often each principle
checked was found broken, how often a critique revised, how often the judge preferred the revision, and the
judge's margins (fixed bins, a streaming mean and a reservoir for the median, per judging method).

Stage reports (NAME.json) add the tokens each stage spent, and their cost at a price per million tokens
(`--price-per-million`; cache hits are free): see `selfalign.report.tokens`.
"""

from __future__ import annotations

import html
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from selfalign.io.jsonl import InputError, read_json_lines
from selfalign.report.tallies import LENGTHS, MARGIN_BINS, Margins, Preferences, Reservoir  # noqa: F401 - re-exported

SAMPLE = 200  # example records kept per kind


def kind_of(obj: dict[str, Any]) -> str:
    if "drop_reason" in obj:
        return "dropped"
    if "messages" in obj or "conversations" in obj or ("instruction" in obj and "output" in obj) or (
            "chosen" in obj and "rejected" in obj):  # SFT formats, or a dpo pair
        return "exported"
    if isinstance(obj.get("judge"), dict):  # the same prompts again, after the answers: counted apart
        return "judged"
    if isinstance(obj.get("checked_principles"), list):
        return "critiqued"
    if "verbose_response" in obj:
        return "refined"
    if "response" in obj and "thoughts" in obj:
        return "aligned"
    if "prompt" in obj:
        return "prompts"
    return "other"


class Summary:
    def __init__(self, seed: int = 0, price: tuple[float, float] | None = None):
        rng = random.Random(seed)
        self.price = price  # USD per million prompt, completion tokens
        self.tokens: list[tuple[str, Any]] = []  # (stage report's file name, its Tokens)
        self.files: list[str] = []
        self.counts: Counter[str] = Counter()
        self.drops: dict[str, Counter[str]] = defaultdict(Counter)
        self.drop_examples: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.principles: Counter[str] = Counter()
        self.principles_by_type: dict[str, Counter[str]] = defaultdict(Counter)
        self.question_types: dict[str, Counter[str]] = defaultdict(Counter)
        self.topics: dict[str, Counter[str]] = defaultdict(Counter)
        self.sources: dict[str, Counter[str]] = defaultdict(Counter)
        self.lengths: dict[tuple[str, str], Reservoir] = {}
        self.rng = rng
        self.samples: dict[str, Reservoir] = {}
        self.stage_reports: list[dict[str, Any]] = []
        self.bad_lines = 0
        self.preferences = Preferences(rng)

    def add_file(self, path: str) -> None:
        self.files.append(path)
        if path.endswith(".json"):
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as e:
                why = "nested too deeply" if isinstance(e, RecursionError) else e
                raise InputError(path, None, f"not a JSON report: {why}") from None
            if isinstance(data, dict) and "stage" in data:
                from selfalign.report.tokens import Tokens

                self.stage_reports.append(data)
                self.tokens.append((Path(path).stem, Tokens.from_dict(data.get("tokens"))))
                return
            raise InputError(path, None, "a .json file must be a selfalign --report (it has no 'stage')")
        for _lineno, obj in read_json_lines(path):
            if isinstance(obj, InputError):
                self.bad_lines += 1
                continue
            self.add(obj)

    def add(self, obj: dict[str, Any]) -> None:
        kind = kind_of(obj)
        self.counts[kind] += 1
        if kind == "dropped":
            stage, reason = str(obj.get("stage", "?")), str(obj["drop_reason"])
            self.drops[stage][reason] += 1
            ex = self.drop_examples[(stage, reason)]
            if len(ex) < 3:
                rec = obj.get("record") or {}
                ex.append({"prompt": str(rec.get("prompt", ""))[:300], "detail": str(obj.get("detail") or "")[:300]})
            return
        self.preferences.add(obj)
        if kind not in ("prompts", "aligned", "refined"):
            return
        # the same prompt passes through several files: counts per kind, the earliest kind given wins
        qt = obj.get("question_type")
        if qt:
            self.question_types[kind][str(qt)] += 1
            self.topics[kind][f"{qt}: {obj.get('topic', '')}"] += 1
        self.sources[kind][str(obj.get("source", "unknown"))] += 1
        for field in ("prompt", "response", "verbose_response"):
            if isinstance(obj.get(field), str):
                if (field, kind) not in self.lengths:
                    self.lengths[(field, kind)] = Reservoir(LENGTHS, self.rng)
                self.lengths[(field, kind)].add(obj[field])
        if kind == "aligned":
            for pid in obj.get("principles") or []:
                self.principles[str(pid)] += 1
                self.principles_by_type[str(qt or "self-instruct / other")][str(pid)] += 1
        if kind in ("aligned", "refined"):
            self.samples.setdefault(kind, Reservoir(SAMPLE, self.rng)).add(
                {k: obj.get(k) for k in ("id", "prompt", "thoughts", "response", "principles")})

    @staticmethod
    def _first(per_kind: dict[str, Any]) -> Any:
        return next((per_kind[k] for k in ("prompts", "aligned", "refined") if k in per_kind), Counter())

    def token_lengths(self) -> dict[str, list[int]]:
        from selfalign.text.tokens import token_counter

        count = token_counter("tiktoken:o200k_base")
        out = {}
        for field in ("prompt", "response", "verbose_response"):
            res = self._first({kind: r for (f, kind), r in self.lengths.items() if f == field})
            if isinstance(res, Reservoir) and res.items:
                out[field] = [count(t) for t in res.items]
        return out

    def as_dict(self) -> dict[str, Any]:
        lengths = self.token_lengths()
        return {
            "files": self.files, "records": dict(self.counts), "bad_lines": self.bad_lines,
            "pipeline": {k: self.counts.get(k, 0) for k in ("prompts", "aligned", "refined", "critiqued", "judged",
                                                             "exported")},
            "dropped": {s: dict(c.most_common()) for s, c in self.drops.items()},
            "drop_examples": {f"{s}/{r}": ex for (s, r), ex in self.drop_examples.items()},
            "principles_cited": dict(self.principles.most_common()),
            "principles_by_question_type": {t: dict(c.most_common()) for t, c in self.principles_by_type.items()},
            "question_types": dict(self._first(self.question_types).most_common()),
            "topics": len(self._first(self.topics)), "sources": dict(self._first(self.sources).most_common()),
            "token_lengths": {k: {"n": len(v), "median": sorted(v)[len(v) // 2], "max": max(v)}
                              for k, v in lengths.items()},
            "stage_reports": self.stage_reports,
            "tokens": self.tokens_summary(),
            "preferences": self.preferences.as_dict(),
        }

    def tokens_summary(self) -> dict[str, Any]:
        """Each stage report's tokens (with its cost at `price`) and their total; {} if none spent any."""
        from selfalign.report.tokens import Tokens

        spent = [(name, t) for name, t in self.tokens if t]
        if not spent:
            return {}
        total = Tokens()
        for _, t in spent:
            total.add(t)

        def one(t: Any) -> dict[str, Any]:
            usd = t.cost(self.price)
            return {**t.as_dict(), **({"cost_usd": round(usd, 6)} if usd is not None else {})}

        return {"stages": {name: one(t) for name, t in spent}, "total": one(total),
                **({"price_per_million": list(self.price)} if self.price else {})}


def print_text(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title="selfalign report: pipeline", title_justify="left")
    t.add_column("stage")
    t.add_column("records", justify="right")
    for k, v in summary["pipeline"].items():
        t.add_row(k, str(v))
    for stage, reasons in summary["dropped"].items():
        for reason, n in reasons.items():
            t.add_row(f"[yellow]{stage} dropped: {reason}[/]", str(n))
    console.print(t)
    for title, data in (("principles cited", summary["principles_cited"]), ("question types", summary["question_types"]),
                        ("sources", summary["sources"])):
        if data:
            u = Table(title=title, title_justify="left")
            u.add_column("")
            u.add_column("records", justify="right")
            for k, v in data.items():
                u.add_row(k, str(v))
            console.print(u)
    if summary["token_lengths"]:
        u = Table(title="lengths (tokens, o200k_base)", title_justify="left")
        for col in ("text", "sampled", "median", "max"):
            u.add_column(col)
        for k, v in summary["token_lengths"].items():
            u.add_row(k, str(v["n"]), str(v["median"]), str(v["max"]))
        console.print(u)
    if summary.get("preferences"):
        print_preferences(summary["preferences"], console)
    if summary.get("tokens"):
        print_tokens(summary["tokens"], console)


def _token_rows(tokens: dict[str, Any]) -> list[list[str]]:
    from selfalign.report.tokens import Tokens, table

    price = tokens.get("price_per_million")
    return table([(name, Tokens.from_dict(t)) for name, t in tokens["stages"].items()],
                 tuple(price) if price else None)


def print_tokens(tokens: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from selfalign.report.tokens import price_note

    head, *rows = _token_rows(tokens)
    t = Table(title="tokens spent", title_justify="left")
    for i, col in enumerate(head):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    price = tokens.get("price_per_million")
    console.print(f"{price_note(tuple(price) if price else None)}; requests answered from the completion cache are "
                  "counted apart and cost nothing", highlight=False)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def print_preferences(prefs: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if c := prefs.get("critiqued"):
        console.print(f"preferences: {c['records']} critiqued records, {c['revised']} revised "
                      f"({_pct(c['revision_rate'])})", highlight=False)
        t = Table(title="preferences: critique, by principle", title_justify="left")
        for col in ("principle", "checked", "violated", "rate"):
            t.add_column(col, justify="left" if col == "principle" else "right")
        for pid, v in c["principles"].items():
            t.add_row(pid, str(v["checked"]), str(v["violated"]), _pct(v["rate"]))
        console.print(t)
    if j := prefs.get("judged"):
        t = Table(title=f"preferences: judge ({j['records']} records)", title_justify="left")
        t.add_column("")
        t.add_column("records", justify="right")
        rv = j["revision_vs_original"]
        t.add_row("revision pairs (response vs revision)", str(j["pairs"].get("revision", 0)))
        t.add_row("  revision chosen (win rate; ties apart)", f"{rv['revision']} ({_pct(rv['win_rate'])})")
        t.add_row("  original chosen", str(rv["response"]))
        t.add_row("  tie", str(rv["tie"]))
        t.add_row("sampled pairs (counts only)", str(j["pairs"].get("sampled", 0)))
        if j["pairs"].get("other"):
            t.add_row("other pairs", str(j["pairs"]["other"]))
        console.print(t)
        u = Table(title="preferences: judge margins", title_justify="left")
        for col in ("method", "n", "no margin", "min", "median", "mean", "max", *MARGIN_BINS):
            u.add_column(col, justify="left" if col == "method" else "right")
        for method, m in j["margins"].items():
            stats = [_num(m.get(k)) for k in ("min", "median", "mean", "max")]
            u.add_row(method, str(m["n"]), str(m["no_margin"]), *stats, *(str(n) for n in m["histogram"].values()))
        console.print(u)
        if len(j["margins"]) > 1:
            console.print(f"note: {j['margin_note']}", highlight=False)


def render_html(s: Summary) -> str:
    import plotly.graph_objects as go
    import plotly.io as pio

    summary = s.as_dict()
    lengths = s.token_lengths()  # the same samples as the summary's figures
    figs: list[tuple[str, Any]] = []
    pipe = summary["pipeline"]
    figs.append(("Records through the pipeline", go.Figure(go.Bar(x=list(pipe), y=list(pipe.values())))))
    if summary["dropped"]:
        fig = go.Figure()
        for stage, reasons in summary["dropped"].items():
            fig.add_bar(name=stage, x=list(reasons), y=list(reasons.values()))
        figs.append(("Drops by reason", fig))
    if summary["principles_cited"]:
        fig = go.Figure()
        for qt, c in summary["principles_by_question_type"].items():
            fig.add_bar(name=qt, x=list(c), y=list(c.values()))
        fig.update_layout(barmode="stack", xaxis_title="principle id")
        figs.append(("Principles cited, by question type", fig))
    if lengths:
        fig = go.Figure()
        for k, v in lengths.items():
            fig.add_histogram(x=v, name=k, opacity=0.6)
        fig.update_layout(barmode="overlay", xaxis_title="tokens")
        figs.append(("Length distributions", fig))
    if summary["question_types"]:
        qt = summary["question_types"]
        figs.append(("Red-teaming question types", go.Figure(go.Bar(x=list(qt), y=list(qt.values())))))
    if summary["sources"]:
        src = summary["sources"]
        figs.append(("Seed vs generated (source)", go.Figure(go.Pie(labels=list(src), values=list(src.values())))))
    prefs = summary["preferences"]
    margins = {m: v for m, v in prefs.get("judged", {}).get("margins", {}).items() if v["n"]}
    if margins:
        fig = go.Figure()
        for method, m in margins.items():
            fig.add_bar(name=method, x=list(m["histogram"]), y=list(m["histogram"].values()))
        fig.update_layout(xaxis_title="judge margin" + (" (log-odds; a vote's is bounded by its votes)" if len(margins) > 1 else ""))
        figs.append(("Judge margins, by method", fig))
    parts = []
    for i, (title, fig) in enumerate(figs):
        fig.update_layout(title=title, height=360, margin={"t": 50, "b": 40, "l": 40, "r": 20})
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=f"chart{i}"))
    rows = "".join(
        f"<tr><td>{html.escape(str(r.get('prompt') or ''))}</td><td>{html.escape(str(r.get('thoughts') or ''))}</td>"
        f"<td>{html.escape(str(r.get('response') or ''))}</td><td>{html.escape(', '.join(map(str, r.get('principles') or [])))}</td></tr>"
        for r in s._first(s.samples).items) if s.samples else ""
    examples = "".join(
        f"<li><b>{html.escape(k)}</b>: " + "; ".join(html.escape(e['prompt'][:120] + (' - ' + e['detail'][:120] if e['detail'] else ''))
                                                     for e in ex) + "</li>"
        for k, ex in summary["drop_examples"].items())
    stage_rows = "".join(
        f"<tr><td>{html.escape(str(r.get('stage')))}</td><td>{html.escape(str(r.get('read', '')))}</td>"
        f"<td>{html.escape(str(r.get('kept', '')))}</td>"
        f"<td>{html.escape(', '.join(f'{k} {v}' for k, v in (r.get('dropped') or {}).items()))}</td></tr>"
        for r in summary["stage_reports"])
    stages = (f"<h2>Stage reports</h2><table id='stages'><thead><tr><th>stage</th><th>read</th><th>kept</th>"
              f"<th>dropped by reason</th></tr></thead><tbody>{stage_rows}</tbody></table>") if stage_rows else ""
    preferences = _preferences_html(prefs)
    if summary["tokens"]:
        from selfalign.report.tokens import price_note

        head, *rows = _token_rows(summary["tokens"])
        price = summary["tokens"].get("price_per_million")
        stages += ("<h2>Tokens spent</h2><table id='tokens'><thead><tr>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                   + f"</tbody></table><p>{html.escape(price_note(tuple(price) if price else None))}; requests "
                   "answered from the completion cache are counted apart and cost nothing.</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>selfalign report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}} .charts{{display:grid;grid-template-columns:1fr 1fr;gap:1em}}</style>
</head><body><h1>selfalign report</h1><p>{html.escape(', '.join(summary['files']))}</p>
<div class="charts">{''.join(f'<div class="chart">{p}</div>' for p in parts)}</div>
{stages}
{preferences}
<h2>Drop reasons, with examples</h2><ul id="drop-examples">{examples or '<li>none</li>'}</ul>
<h2>Sample records</h2><input id="search" placeholder="search prompts, thoughts, answers" size="60">
<table id="samples"><thead><tr><th>prompt</th><th>internal thoughts</th><th>answer</th><th>principles</th></tr></thead>
<tbody>{rows}</tbody></table>
<script>document.getElementById('search').addEventListener('input', function(e) {{
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('#samples tbody tr').forEach(function(r) {{
    r.style.display = r.textContent.toLowerCase().includes(q) ? '' : 'none'; }});
}});</script>
<script type="application/json" id="summary">{html.escape(json.dumps(summary))}</script>
</body></html>"""


def _preferences_html(prefs: dict[str, Any]) -> str:
    """The preferences section (critique and judge tallies) as tables; empty when there is no such data."""
    if not prefs:
        return ""
    def e(value: Any) -> str:  # every value, numbers too: a report file may say anything
        return html.escape(str(value))

    parts = ["<h2>Preferences</h2><div id='preferences'>"]
    if c := prefs.get("critiqued"):
        rows = "".join(f"<tr><td>{e(pid)}</td><td>{e(v['checked'])}</td><td>{e(v['violated'])}</td>"
                       f"<td>{e(_pct(v['rate']))}</td></tr>" for pid, v in c["principles"].items())
        parts.append(f"<h3>Critique</h3><p>{e(c['records'])} critiqued records, {e(c['revised'])} revised "
                     f"({e(_pct(c['revision_rate']))}).</p><table id='critique-principles'><thead><tr>"
                     f"<th>principle</th><th>checked</th><th>violated</th><th>violation rate</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    if j := prefs.get("judged"):
        rv = j["revision_vs_original"]
        pairs = ", ".join(f"{k} {v}" for k, v in j["pairs"].items())
        parts.append(f"<h3>Judge</h3><p>{e(j['records'])} judged records; pairs: {e(pairs)}. Revision over "
                     f"original: {e(rv['revision'])} of {e(rv['pairs'])} ({e(_pct(rv['win_rate']))}), original "
                     f"{e(rv['response'])}, tie {e(rv['tie'])} ({e(rv['note'])}). {e(j['sampled_note'])}.</p>")
        head = "".join(f"<th>{e(c)}</th>" for c in ("method", "n", "no margin", "min", "median", "mean", "max",
                                                       *MARGIN_BINS))
        rows = "".join(f"<tr><td>{e(method)}</td><td>{e(m['n'])}</td><td>{e(m['no_margin'])}</td>"
                       + "".join(f"<td>{e(_num(m.get(k)))}</td>" for k in ("min", "median", "mean", "max"))
                       + "".join(f"<td>{e(n)}</td>" for n in m["histogram"].values()) + "</tr>"
                       for method, m in j["margins"].items())
        parts.append(f"<table id='judge-margins'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                     f"<p>Note: {e(j['margin_note'])}.</p>")
    return "".join(parts) + "</div>"
