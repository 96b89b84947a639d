"""Format bombs are refused before any automaton is built (limits.py); what passes compiles in a child process
killed at its deadline (bounded.py); compiled formats and refusals are cached."""

from __future__ import annotations

import doctest
import json
import multiprocessing
import threading
import time

import psutil
import pytest

from prunekit.decoding.decog import (
    CompileBudget,
    FormatCompileTimeoutError,
    FormatTooLargeError,
    HardMaskProcessor,
    Regex,
    Sequence,
    TokenVocabulary,
    Wildcard,
    compile_format,
    compile_token_dfa_bounded,
    limits,
    parse_format,
)
from prunekit.decoding.decog import bounded as bounded_module
from prunekit.decoding.decog.automaton import CharAutomaton
from prunekit.decoding.decog.guided import FormatGuide
from prunekit.decoding.errors import InvalidRequestError

QUICK_S = 0.5  # a refusal must never cost a worker more than this (they take well under 10 ms here)
SLOW_BUT_VALID = "pivot:<free:32>Final: <int><free:16>."  # passes the static limits (236 states); takes a minute


@pytest.fixture(scope="module")
def byte_vocab() -> TokenVocabulary:
    """A byte-level vocabulary (every byte a token, EOS = 0): like SmolLM2's, every format can be written."""
    return TokenVocabulary.from_bytes([None] + [bytes([b]) for b in range(256)], [0])


def _json(obj: object) -> str:
    return "json:" + json.dumps(obj)


BOMBS = [
    ("regex:a{50000}", "repeats {50000}, above the limit of 256"),
    ("regex:(a{1000}){1000}", "repeats {1000}, above the limit of 256"),
    ("regex:(a{200}){200}", "expands to 40,000 characters"),
    ("regex:(x|y)*x(x|y){24}", "about 2^25 automaton states, above the limit of 1,024"),
    ("regex:(x|y)*x(x|y){10}", "about 2,062 automaton states"),
    ("pivot:<free:64>The answer is <int>", "about 1,156 automaton states"),
    ("regex:(x|y)*x[xy]{24}", "about 2^25 automaton states"),
    ("regex:.{0,64}x[xy]{24}", "automaton states, above the limit of 1,024"),
    (_json({"code": {"pattern": "(x|y)*x(x|y){24}"}}), "pattern of JSON key 'code'"),
    (_json({"code": {"pattern": "a{50000}"}}), "repeats {50000}"),
    (_json({f"p{i}": "string" for i in range(100_000)}), "100,000 properties, above the limit of 64"),
    ("json:" + '{"a": ' * 1000 + '"string"' + "}" * 1000, "nests too deeply"),
    (_json({"a": {"b": {"c": {"d": ["x"]}}}}), "nests deeper than 4 levels"),
    (_json({"a": [f"v{i}" for i in range(100_000)]}), "100,000 options, above the limit of 256"),
    (_json({"a": {"enum": ["x" * 300]}}), "300 characters long, above the limit of 256"),
    (_json({"k" * 300: "string"}), "JSON key"),
    (_json({"a": {"pattern": "a" * 5000}}), "5,000 characters long"),
    ("choice:" + "|".join(f"v{i}" for i in range(1000)), "1,000 options, above the limit of 256"),
    ("choice:" + "|".join("x" * 200 + str(i) for i in range(100)), "format spec is 20,"),
    ("pivot:<free>" + "x" * 300, "pivot text"),
    ("pivot:<free><re:x[xy]{24}>", "about 2^25 automaton states"),
    ("regex:[\\u0000-\\U0010ffff]", "1,114,112 characters in its class ranges"),
    ("regex:" + "(" * 40 + "a" + ")" * 40, "nests groups 40 deep, above the limit of 32"),
    ("regex:" + "ab" * 3000, "6,000 characters long"),
    ("regex:" + "a" * 1_000_000, "1,000,006 characters long"),
]


@pytest.mark.parametrize(("spec", "words"), BOMBS, ids=[s[:40] for s, _ in BOMBS])
def test_bombs_are_refused_quickly_with_what_is_too_large(spec: str, words: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(FormatTooLargeError) as info:
        parse_format(spec)
    assert time.perf_counter() - t0 < QUICK_S
    assert words in str(info.value)
    assert isinstance(info.value, InvalidRequestError)  # the service's 400


def test_the_service_path_refuses_a_bomb_without_starting_a_child(byte_vocab, monkeypatch) -> None:
    monkeypatch.setattr(bounded_module, "_compile_in_child", _forbidden)
    t0 = time.perf_counter()
    with pytest.raises(FormatTooLargeError, match="repeats"):
        FormatGuide(byte_vocab).processor("regex:a{50000}", "hard_mask", 16)
    assert time.perf_counter() - t0 < QUICK_S
    with pytest.raises(FormatTooLargeError, match="2\\^25"):  # a Format built in code is checked as well
        compile_token_dfa_bounded(Sequence((Wildcard(), Regex("x[xy]{24}"))), byte_vocab)


SPECS_THAT_FIT = [
    "pivot:<free>The answer is <int>",
    r"pivot:<free>The answer is <int><re:\.?>",
    "pivot:<free:32>Final: <int>",
    'json:{"answer": "string", "verdict": ["correct", "incorrect"], "n": "integer", "x": "number", "ok": "boolean"}',
    'json:{"code": {"pattern": "[A-Z]{3}-\\\\d{4}"}, "ip": {"pattern": "(\\\\d{1,3}\\\\.){3}\\\\d{1,3}"}}',
    'json:{"città": {"enum": ["Zürich", "Genève"]}}',
    "choice:" + "|".join(f"option {i}" for i in range(256)),
    r"regex:\d{4}-\d{2}-\d{2}",
    r"regex:[\w.]+@\w+\.[a-z]{2,4}",
    "regex:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    r"regex:.*\d{4}",
    r"regex:(x|y)*x(x|y){8}",
    "regex:[\u4e00-\u9fff]+",  # the characters themselves: interegular reads no \\u escapes
    "regex:[a-z]{1,200}",
    "pivot:<free:64>Final: <choice:yes|no>",
    SLOW_BUT_VALID,
]


@pytest.mark.parametrize("spec", SPECS_THAT_FIT)
def test_ordinary_formats_pass_the_static_limits(spec: str) -> None:
    parse_format(spec)


@pytest.mark.parametrize("spec", SPECS_THAT_FIT[:6])
def test_ordinary_formats_compile_the_same_in_the_child(spec: str) -> None:
    fmt = parse_format(spec)
    child = bounded_module.compile_char_automaton_bounded(fmt, CompileBudget(timeout_s=30))
    assert _canonical(child) == _canonical(compile_format(fmt))  # state numbers follow the process's hash seed


def test_a_compile_past_its_deadline_is_killed_refused_and_remembered(byte_vocab, monkeypatch) -> None:
    bounded_module.compile_char_automaton_bounded(parse_format("regex:[0-9]+"))  # the forkserver is up
    before = _descendants()
    budget = CompileBudget(timeout_s=0.05)
    t0 = time.perf_counter()
    with pytest.raises(FormatCompileTimeoutError, match=r"took longer than 0\.05 s to compile"):
        compile_token_dfa_bounded(SLOW_BUT_VALID, byte_vocab, budget=budget)
    assert time.perf_counter() - t0 < 2.0  # the child is killed at the deadline, not when it would finish
    assert multiprocessing.active_children() == []
    assert _descendants() <= before  # the forkserver and resource tracker stay; no compile child is left
    monkeypatch.setattr(bounded_module, "_compile_in_child", _forbidden)
    t0 = time.perf_counter()
    with pytest.raises(FormatCompileTimeoutError, match="took longer"):  # the verdict is cached: no new child
        compile_token_dfa_bounded(SLOW_BUT_VALID, byte_vocab, budget=budget)
    assert time.perf_counter() - t0 < 0.01


def test_a_compile_past_its_memory_is_refused() -> None:
    fmt = parse_format(SLOW_BUT_VALID)
    with pytest.raises(FormatTooLargeError, match="needs more than 1 MiB to compile"):
        bounded_module.compile_char_automaton_bounded(fmt, CompileBudget(timeout_s=20, memory_mb=1))


def test_the_char_state_cap_is_applied_in_the_child() -> None:
    fmt = parse_format("regex:[a-z]{200}")
    with pytest.raises(FormatTooLargeError, match="201 character states, above the limit of 100"):
        bounded_module.compile_char_automaton_bounded(fmt, CompileBudget(timeout_s=30), max_char_states=100)


def test_compiled_formats_are_cached_and_one_child_serves_concurrent_callers(byte_vocab, monkeypatch) -> None:
    calls: list[str] = []
    compile_in_child = bounded_module._compile_in_child

    def counted(fmt, budget, max_char_states, shown):
        calls.append(shown)
        time.sleep(0.2)  # the other threads arrive while this one compiles
        return compile_in_child(fmt, budget, max_char_states, shown)

    monkeypatch.setattr(bounded_module, "_compile_in_child", counted)
    spec = 'json:{"answer": "string", "n": "integer", "case": ["cached", "shared"]}'
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(compile_token_dfa_bounded(spec, byte_vocab))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 4 and all(r is results[0] for r in results)
    t0 = time.perf_counter()
    assert compile_token_dfa_bounded(spec, byte_vocab) is results[0]
    assert time.perf_counter() - t0 < 0.01 and len(calls) == 1


def test_the_guide_builds_a_processor_for_an_ordinary_format(byte_vocab) -> None:
    proc = FormatGuide(byte_vocab, budget=CompileBudget(timeout_s=30)).processor("choice:yes|no", "hard_mask", 8)
    assert isinstance(proc, HardMaskProcessor)


def test_budget_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("PRUNEKIT_FORMAT_COMPILE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PRUNEKIT_FORMAT_COMPILE_MEMORY_MB", "256")
    assert CompileBudget.from_env() == CompileBudget(timeout_s=0.5, memory_mb=256)


@pytest.mark.parametrize(
    ("pattern", "most"),
    [
        (r"-?\d+", 8),
        (r".*\d{4}", 16),
        (r".*\w\d{3}", 16),
        (r".*[A-Za-z]{3,10} is the answer", 64),
        (r"(\d{1,3}\.){3}\d{1,3}", 32),
        (r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*', 32),  # a JSON string's content
        (r"(?:(?!The answer is )[\s\S])*The answer is ", 32),  # free text up to a pivot
        (r"a?a[ab]{24}", 1024),  # at most two starts: no blow-up
    ],
)
def test_the_estimate_stays_small_for_unambiguous_shapes(pattern: str, most: int) -> None:
    assert limits.check_regex(pattern).dfa_states <= most


def test_the_estimate_tracks_the_real_blow_up() -> None:
    # (x|y)*x(x|y){n} needs 2^(n+1) DFA states: the estimate follows it, and refuses past 1,024
    for n in (2, 4, 8):
        assert 2 ** (n + 1) <= limits.check_regex(f"(x|y)*x(x|y){{{n}}}").dfa_states <= 2 ** (n + 2)
    with pytest.raises(FormatTooLargeError):
        limits.check_regex("(x|y)*x(x|y){10}")


def test_limits_doctests() -> None:
    assert doctest.testmod(limits).failed == 0


def _canonical(automaton: CharAutomaton) -> tuple:
    """The automaton with states renumbered in breadth-first order over sorted characters (minimal DFAs that are
    the same language come out equal)."""
    order = {automaton.initial: 0}
    queue = [automaton.initial]
    for state in queue:
        targets = [automaton.transitions[state][ch] for ch in sorted(automaton.transitions[state])]
        for target in [*targets, automaton.default[state]]:
            if target is not None and target not in order:
                order[target] = len(order)
                queue.append(target)
    rows = tuple(
        (
            tuple((ch, order[t]) for ch, t in sorted(automaton.transitions[s].items())),
            None if automaton.default[s] is None else order[automaton.default[s]],
            s in automaton.accepting,
        )
        for s in queue
    )
    return rows, automaton.alphabet


def _forbidden(*_args, **_kwargs):
    raise AssertionError("a compile child was started")


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}
