"""modules/cmd_args.py, Forge's: A1111's flags plus Forge's own that matter here."""

from modules._a1111 import inherit

inherit(globals(), "cmd_args")

parser.add_argument("--text-encoder-dir", type=str, default=None)  # noqa: F821
parser.add_argument("--always-cpu", action="store_true")  # noqa: F821
parser.add_argument("--skip-python-version-check", action="store_true")  # noqa: F821
