"""The top-level `launch` module (launch.py -> modules/launch_utils.py), for install.py files.

`run_pip` never runs pip: it records the call (in `pip_calls`, and as a JSON line in the file
named by WEBUI_STUB_PIP_LOG when set, so a subprocess install.py is visible to tests) and returns
"" — or None under --skip-install, as the real one does. Set WEBUI_STUB_PIP_FAIL=1 to make it raise
RuntimeError the way a failing pip does.
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

from modules import cmd_args

args = cmd_args.parser.parse_known_args(cmd_args.argv())[0]
python = sys.executable
git = os.environ.get('GIT', "git")
index_url = os.environ.get('INDEX_URL', "")
dir_repos = "repositories"
pip_calls: list[tuple[str, str]] = []

VERSION_TAG = "v1.10.1"
COMMIT = "82a973c04367123ae98bd9abdf80d9eda9b910e2"


def git_tag():
    return VERSION_TAG


def commit_hash():
    return COMMIT


def is_installed(package):
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            return False
        return spec is not None
    return dist is not None


def run(command, desc=None, errdesc=None, custom_env=None, live=False):
    if desc is not None:
        print(desc)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell=True, env=os.environ if custom_env is None else custom_env)
    if result.returncode != 0:
        raise RuntimeError("\n".join([errdesc or 'Error running command.', f"Command: {command}", f"Error code: {result.returncode}",
                                      f"stdout: {result.stdout.decode(errors='ignore')}", f"stderr: {result.stderr.decode(errors='ignore')}"]))
    return result.stdout.decode(encoding="utf8", errors="ignore")


def run_pip(command, desc=None, live=False):
    if args.skip_install:
        return
    pip_calls.append((command, desc))
    log = os.environ.get("WEBUI_STUB_PIP_LOG")
    if log:
        with open(log, "a", encoding="utf8") as f:
            f.write(json.dumps({"command": command, "desc": desc}) + "\n")
    print(f"Installing {desc}")
    if os.environ.get("WEBUI_STUB_PIP_FAIL") == "1":
        raise RuntimeError(f"Couldn't install {desc}.\nCommand: \"{python}\" -m pip {command} --prefer-binary\nError code: 1")
    return ""


def run_extension_installer(extension_dir):
    """Run `<extension_dir>/install.py` as the real launcher does: a subprocess, PYTHONPATH = webui root,
    cwd = the launcher's cwd. Failures are reported, not raised. Returns the subprocess' stdout."""
    from modules import errors, paths_internal
    path_installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(path_installer):
        return None
    try:
        env = os.environ.copy()
        env['PYTHONPATH'] = f"{paths_internal.script_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
        stdout = run(f'"{python}" "{path_installer}"', errdesc=f"Error running install.py for extension {extension_dir}", custom_env=env).strip()
        if stdout:
            print(stdout)
        return stdout
    except Exception as e:
        errors.report(str(e))
        return None


def run_extensions_installers(settings_file):
    from modules import paths_internal
    if args.skip_install or args.skip_prepare_environment or args.disable_all_extensions:
        return
    disabled = []
    try:
        with open(settings_file, encoding="utf8") as f:
            settings = json.load(f)
        disabled = settings.get("disabled_extensions", [])
        if settings.get("disable_all_extensions", "none") != "none":
            return
    except (FileNotFoundError, ValueError):
        pass
    if not os.path.isdir(paths_internal.extensions_dir):
        return
    for dirname in sorted(os.listdir(paths_internal.extensions_dir)):
        path = os.path.join(paths_internal.extensions_dir, dirname)
        if os.path.isdir(path) and dirname not in disabled:
            run_extension_installer(path)
