"""The command dispatcher: every command is registered, and a closed pipe is not a traceback."""

from __future__ import annotations

import sys

from vae_lab.cli import main as cli


def test_every_command_module_is_registered_and_has_help(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(cli.COMMANDS)
    for name, cmd in sub.choices.items():
        assert cmd.description, f"{name} has no help line"


class _ClosedPipe:
    """stdout whose reader has gone, as after `… | head -n 1`."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_reader_that_leaves_early_gets_no_traceback(taef2_pair, monkeypatch):
    decoder, _ = taef2_pair
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    monkeypatch.setattr(sys, "stderr", _Quiet())
    assert cli.main(["info", str(decoder)]) == 141


class _Quiet:
    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def close(self):
        pass
