"""docs/RELIABILITY.md keeps pace with the checklist in ROBUSTNESS.md and names tests that exist.

Each checklist bullet is cut into cases at the commas and semicolons that sit outside backticks.
Each table row quotes checklist text between « and »; the quote must be verbatim checklist text
from the same section (so a row cannot drift from the checklist), and every letter and digit of
every case must lie inside some row's quote of that section (so a case added to the checklist
without a row fails here; rows may quote finer pieces than the cut, or a case several times).
A row names pytest node ids in backticks, or says GAP; every id named must be collected by pytest.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKLIST = Path(__file__).resolve().parents[2] / "shared" / "ROBUSTNESS.md"
TABLE = ROOT / "docs" / "RELIABILITY.md"

NODE_RE = re.compile(r"`(tests/[\w/]+\.py::[^`\s]+)`")
QUOTE_RE = re.compile(r"«(.+?)»")
OUTCOME_RE = re.compile(r"\b(passed|failed|skipped|xfail(?:ed)?|GAP)\b")


def _norm(text: str) -> str:
    return " ".join(text.split())


def parse_checklist(text: str) -> dict[str, list[str]]:
    """Section title -> its bullets (continuation lines joined, whitespace collapsed)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and line.startswith("- "):
            current.append(line[2:])
        elif current is not None and current and line.startswith((" ", "\t")) and line.strip():
            current[-1] += " " + line.strip()
    return {title: [_norm(b) for b in bullets] for title, bullets in sections.items()}


def case_spans(bullet: str) -> list[tuple[int, int]]:
    """The cases of a bullet as (start, end) spans: cut at commas and semicolons outside backticks,
    with a leading "or"/"and" left out."""
    spans, begin, in_code = [], 0, False
    for i, ch in enumerate(bullet + ","):
        if ch == "`":
            in_code = not in_code
        elif ch in ",;" and not in_code:
            spans.append((begin, i))
            begin = i + 1
    out = []
    for a, b in spans:
        while a < b and bullet[a] == " ":
            a += 1
        m = re.match(r"(or|and) ", bullet[a:b])
        if m:
            a += m.end()
        while b > a and bullet[b - 1] == " ":
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def split_cases(bullet: str) -> list[str]:
    return [bullet[a:b] for a, b in case_spans(bullet)]


def uncovered_cases(bullet: str, quotes: list[str]) -> list[str]:
    """Cases of ``bullet`` with a letter or digit that no quote covers (quotes may split finer)."""
    covered = [False] * len(bullet)
    for q in quotes:
        start = bullet.find(q)
        while start != -1:
            for i in range(start, start + len(q)):
                covered[i] = True
            start = bullet.find(q, start + 1)
    return [bullet[a:b] for a, b in case_spans(bullet)
            if not all(covered[i] for i in range(a, b) if bullet[i].isalnum())]


def parse_table(text: str) -> dict[str, list[dict]]:
    """Section title -> rows: {quote, nodes, gap, observed, line}."""
    sections: dict[str, list[dict]] = {}
    current: list[dict] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
            continue
        if current is None or not line.startswith("|") or not QUOTE_RE.search(line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        quote = _norm(QUOTE_RE.search(cells[0]).group(1))
        test_cell = cells[-2] if len(cells) >= 2 else ""
        current.append({"quote": quote, "nodes": NODE_RE.findall(test_cell),
                        "gap": "GAP" in test_cell, "observed": cells[-1], "line": number,
                        "cells": len(cells)})
    return sections


def missing_cases(checklist: dict[str, list[str]], table: dict[str, list[dict]]) -> list[str]:
    missing = []
    for title, bullets in checklist.items():
        quotes = [r["quote"] for r in table.get(title, [])]
        for bullet in bullets:
            missing += [f"{title}: {case}" for case in uncovered_cases(bullet, quotes)]
    return missing


def stray_rows(checklist: dict[str, list[str]], table: dict[str, list[dict]]) -> list[str]:
    """Rows whose quote is not verbatim text of a bullet in the same section."""
    stray = []
    for title, rows in table.items():
        bullets = checklist.get(title)
        for row in rows:
            if bullets is None or not any(row["quote"] in b for b in bullets):
                stray.append(f"line {row['line']} ({title}): «{row['quote']}»")
    return stray


def collected_node_ids(files: set[str]) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *sorted(files)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    ids = {line.strip() for line in proc.stdout.splitlines() if "::" in line}
    assert ids, f"pytest collected nothing:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return ids


def unknown_node_ids(nodes: set[str], collected: set[str]) -> list[str]:
    """Named ids that pytest did not collect; a function id stands for all its parameter sets."""
    return sorted(n for n in nodes
                  if n not in collected and not any(c.startswith(n + "[") for c in collected))


# --- the checks -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checklist() -> dict[str, list[str]]:
    if not CHECKLIST.is_file():
        pytest.skip(f"{CHECKLIST} is absent (the shared checklist lives outside the repository)")
    return parse_checklist(CHECKLIST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def table() -> dict[str, list[dict]]:
    return parse_table(TABLE.read_text(encoding="utf-8"))


def test_the_checklist_and_the_table_parse_into_many_cases(checklist, table):
    assert {"Hostile or broken media", "Faults"} <= set(checklist)
    assert sum(len(split_cases(b)) for bs in checklist.values() for b in bs) >= 40
    assert sum(len(rows) for rows in table.values()) >= 40


def test_every_checklist_case_has_a_row(checklist, table):
    missing = missing_cases(checklist, table)
    assert not missing, "checklist cases with no row in docs/RELIABILITY.md:\n" + "\n".join(missing)


def test_every_row_quotes_the_checklist(checklist, table):
    stray = stray_rows(checklist, table)
    assert not stray, "rows that quote no checklist text of their section:\n" + "\n".join(stray)


def test_every_row_names_a_test_or_says_gap_and_what_was_seen(table):
    bad = []
    for title, rows in table.items():
        for row in rows:
            if row["cells"] != 5:
                bad.append(f"line {row['line']}: {row['cells']} columns, not 5")
            if not row["nodes"] and not row["gap"]:
                bad.append(f"line {row['line']}: no test node id and no GAP")
            if not OUTCOME_RE.search(row["observed"]):
                bad.append(f"line {row['line']}: the observed result says nothing")
    assert not bad, "\n".join(bad)


def test_every_named_test_exists(table):
    nodes = {n for rows in table.values() for row in rows for n in row["nodes"]}
    files = {n.split("::")[0] for n in nodes}
    missing_files = sorted(f for f in files if not (ROOT / f).is_file())
    assert not missing_files, f"named test files that do not exist: {missing_files}"
    unknown = unknown_node_ids(nodes, collected_node_ids(files))
    assert not unknown, "node ids pytest does not collect:\n" + "\n".join(unknown)


# --- the matcher itself fails when it should ------------------------------------------------------

SAMPLE = """# x
## Faults
- disk full while writing a video or a config (ENOSPC): clear error, old files intact
- the user closes the tab mid-job; cancels
"""


def test_the_matcher_catches_a_new_case_and_a_stray_row():
    checklist = parse_checklist(SAMPLE + "- a brand new fault, `a; b` stays whole\n")
    assert split_cases(checklist["Faults"][0]) == [
        "disk full while writing a video or a config (ENOSPC): clear error", "old files intact"]
    assert split_cases(checklist["Faults"][2]) == ["a brand new fault", "`a; b` stays whole"]
    table = parse_table("## Faults\n"
                        "| «disk full while writing a video or a config (ENOSPC): clear» "
                        "| x | y | `tests/test_a.py::test_b` | passed |\n"
                        "| «old files intact» | x | y | **GAP** | GAP |\n"
                        "| «the user closes the tab mid-job» | x | y | **GAP** | GAP |\n"
                        "| «the user leaves» | x | y | **GAP** | GAP |\n")
    assert missing_cases(checklist, table) == [  # "error" lies outside the first quote
        "Faults: disk full while writing a video or a config (ENOSPC): clear error",
        "Faults: cancels", "Faults: a brand new fault", "Faults: `a; b` stays whole"]
    assert [s.split(": ", 1)[1] for s in stray_rows(checklist, table)] == ["«the user leaves»"]
    assert table["Faults"][0]["nodes"] == ["tests/test_a.py::test_b"]
    assert table["Faults"][1]["gap"] and not table["Faults"][1]["nodes"]


def test_unknown_node_ids_accepts_parameter_sets_only_of_the_same_function():
    collected = {"tests/test_a.py::test_b[1]", "tests/test_a.py::test_c"}
    assert unknown_node_ids({"tests/test_a.py::test_b", "tests/test_a.py::test_c",
                             "tests/test_a.py::test_bb", "tests/test_a.py::test_d"},
                            collected) == ["tests/test_a.py::test_bb", "tests/test_a.py::test_d"]
