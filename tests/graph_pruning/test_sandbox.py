"""The code sandbox: output, timeout, no network, test counting."""

from __future__ import annotations

from graph_pruning.sandbox import run_python, run_tests


def test_runs_code_and_captures_output() -> None:
    result = run_python("print(6 * 7)")
    assert result.ok and result.stdout.strip() == "42" and not result.timed_out


def test_timeout_kills_the_process() -> None:
    result = run_python("while True:\n    pass", timeout=1.0)
    assert result.timed_out and not result.ok and result.seconds < 5


def test_a_detached_child_does_not_keep_the_caller_waiting() -> None:
    # the child leaves the process group (so the group kill misses it) and sleeps: the old pipe-based capture
    # waited for it to close its copy of stdout
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(8)\n    os._exit(0)\nprint('parent done')"
    )
    result = run_python(code, timeout=2.0)
    assert result.ok and result.stdout.strip() == "parent done" and result.seconds < 4


def test_output_is_capped_on_disk_and_in_the_result() -> None:
    result = run_python("while True:\n    print('x' * 1000)", timeout=3.0, max_output_bytes=4096)
    assert not result.ok and len(result.stdout) == 4096


def test_no_network() -> None:
    result = run_python("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nprint('connected')")
    assert not result.ok and "connected" not in result.stdout
    result = run_python("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9', timeout=1)")
    assert not result.ok


def test_clean_environment() -> None:
    result = run_python("import os\nprint(sorted(os.environ))")
    assert "PATH" in result.stdout and "HF_HUB_OFFLINE" not in result.stdout


def test_run_tests_counts_passes_and_reports_failures() -> None:
    passed, feedback = run_tests("def f(x):\n    return x + 1", ["assert f(1) == 2", "assert f(2) == 4"])
    assert passed == 1 and len(feedback) == 1 and "f(2) == 4" in feedback[0]
    passed, feedback = run_tests("def f(x) return", ["assert f(1) == 2"])
    assert passed == 0 and "SyntaxError" in feedback[0]
    assert run_tests("def f():\n    pass", []) == (0, [])
