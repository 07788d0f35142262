"""Error reporting (modules/errors.py). `reported` keeps every report so tests can see them."""

import sys
import traceback

reported: list[str] = []  # stand-in only: the messages (with traceback text) reported so far


def format_exception(e, tb):
    return "".join(traceback.format_exception(type(e), e, tb))


def report(message: str, *, exc_info: bool = False) -> None:
    """Print an error (and the current exception) to stderr; never raises."""
    text = message
    if exc_info:
        text += "\n" + traceback.format_exc()
    reported.append(text)
    print(text, file=sys.stderr)


def display(e: Exception, task, *, full_traceback=False):
    report(f"{task or 'error'}: {type(e).__name__}: {e}", exc_info=True)


def display_once(e: Exception, task):
    display(e, task)


def print_error_explanation(message):
    lines = message.strip().split("\n")
    print("=" * 60, *lines, "=" * 60, sep="\n", file=sys.stderr)


def run(code, task):
    try:
        code()
    except Exception as e:
        display(e, task)
