"""The e2e tests share the integration tests' helpers and fixtures (per-run prefix, netns
factory, the session-end leak check): load them under the name `tether_it`."""
import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "tether_it", Path(__file__).resolve().parents[1] / "integration" / "conftest.py")
tether_it = importlib.util.module_from_spec(_spec)
sys.modules["tether_it"] = tether_it
_spec.loader.exec_module(tether_it)

netns = tether_it.netns
tmpdir_run = tether_it.tmpdir_run
nothing_left_behind = tether_it.nothing_left_behind
