"""Session-wide guards for the test suite."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

# Helper modules beside the tests (fuzz_strategies) import by name: --import-mode=importlib
# puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))


def _wechatbot_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("wechatbot") and t.is_alive())


@pytest.fixture(scope="session", autouse=True)
def no_wechatbot_threads_left_behind() -> Iterator[None]:
    """A test session leaves no wechatbot thread running: every host a test built was closed."""
    before = set(_wechatbot_threads())
    yield
    deadline = time.monotonic() + 5
    while (left := [n for n in _wechatbot_threads() if n not in before]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"threads still running after the test session (a host was not closed): {left}"


@pytest.fixture
def kit_plugin():
    """``tests/kit_plugin.py`` (commands, a question, a schedule), importable by name as plugins are."""
    import importlib.util
    import sys
    from pathlib import Path

    if "kit_plugin" not in sys.modules:
        spec = importlib.util.spec_from_file_location("kit_plugin", Path(__file__).with_name("kit_plugin.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["kit_plugin"] = module
        spec.loader.exec_module(module)
    return sys.modules["kit_plugin"]
