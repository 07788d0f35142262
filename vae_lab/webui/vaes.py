"""The host's VAE list seen through VAE Lab: folders, names, hashes, identity, family checks."""

from __future__ import annotations

import logging
import os

from vae_lab.errors import IncompatibleVae, VaeLabError
from vae_lab.identity import compatibility
from vae_lab.files.folders import WEBUI_LISTED_EXTENSIONS, file_key, weight_files
from vae_lab.runtime.ramcache import materialize
from vae_lab.webui import state

log = logging.getLogger(__name__)

CHECKPOINT_VAE = "None"  # the checkpoint's own VAE (the WebUI's word for it)
WEIGHT_SUFFIXES = WEBUI_LISTED_EXTENSIONS  # what the WebUI's own VAE list takes


def download_dir() -> str:
    host = state.current().host
    return host.option("vae_lab_download_dir", "") or host.vae_folder()


def vae_dirs() -> list[str]:
    host = state.current().host
    dirs = [host.vae_folder(), *host.extra_vae_folders()]
    dl = download_dir()
    if dl and os.path.abspath(dl) not in map(os.path.abspath, dirs):
        dirs.append(dl)
    return dirs


def add_download_folder() -> None:
    """List files of a download folder the host does not scan (after the host's own rescan)."""
    vae_dict = state.current().host.vae_list()
    dl = download_dir()
    if dl and os.path.isdir(dl):
        for path in weight_files(dl, WEIGHT_SUFFIXES):
            if os.path.basename(path) not in vae_dict:
                vae_dict[os.path.basename(path)] = os.path.abspath(path)


def refresh_vae_list() -> None:
    """The host's own rescan, plus files in a download folder it does not scan."""
    state.current().host.refresh_vae_list()
    add_download_folder()


def vae_names() -> list[str]:
    return list(state.current().host.vae_list())


def resolve_name(name: str | None) -> str | None:
    """A VAE name from the UI/API/infotext -> absolute path; "None" -> None (checkpoint's own).

    Raises `VaeLabError` for a name the host does not list (after one refresh).
    """
    name = (name or "").strip()
    if name.lower() == CHECKPOINT_VAE.lower():
        return None
    for attempt in range(2):
        for key, path in state.current().host.vae_list().items():
            if key.lower() == name.lower():
                return path
        if attempt == 0:
            refresh_vae_list()
    raise VaeLabError(f"unknown VAE '{name}': not in the WebUI's VAE list (models/VAE); refresh the list or check the name")


def same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def vae_hash(vae_file: str | None) -> str | None:
    """The 10-hex infotext hash of `vae_file`: its own full-file SHA-256 (WebUI pitfall 9).

    From VAE Lab's identity when the file was already read, else from the WebUI's hash cache
    under the file's own title (`vae/<name>`, not the shared `vae` that goes stale); None
    under `--no-hashing`, as the WebUI does.
    """
    if not vae_file:
        return None
    from modules import hashes, shared

    if getattr(shared.cmd_opts, "no_hashing", False):
        return None
    try:
        info = state.current().infos.get(file_key(vae_file))
    except OSError:
        return None
    if info is not None and getattr(info, "file_sha256", None):
        return info.file_sha256[:10]
    full = hashes.sha256(vae_file, f"vae/{os.path.basename(vae_file)}")
    return full[:10] if full else None


def read_state_dict(path: str) -> dict:
    """Read `path` once: identify it (family, hash) and return its weights in owned memory."""
    from vae_lab.files.loading import load_vae_file
    from vae_lab.identity.identify import identify

    vf = load_vae_file(path)
    state.current().infos[file_key(path)] = identify(vf)
    if vf.kind != "kl":
        raise IncompatibleVae(f"{os.path.basename(path)} is a tiny autoencoder (TAESD), not a full VAE")
    return materialize(vf.state_dict)


def vae_info(path: str):
    """The `VaeInfo` of `path`, from the same single read that fills the RAM cache."""
    session = state.current()
    key = file_key(path)
    if key not in session.infos:
        try:
            session.ram_cache().get(path, read_state_dict)
        except IncompatibleVae:
            pass  # a TAE: identified, not cached
        if key not in session.infos:  # cached weights of an older identity run: identify only
            from vae_lab.identity.identify import inspect

            session.infos[key] = inspect(path)
    return session.infos[key]


def model_family(model) -> tuple[str, int]:
    flags = state.current().host.model_flags(model)
    return compatibility.model_family(**flags), flags["latent_channels"]


def check_compatible(model, vae_file: str | None) -> compatibility.Verdict:
    """Family check of `vae_file` for `model` (the checkpoint's own VAE always fits)."""
    if vae_file is None:
        return compatibility.Verdict(compatibility.OK)
    fam, channels = model_family(model)
    info = vae_info(vae_file)
    return compatibility.check(
        os.path.basename(vae_file),
        vae_family=getattr(info, "family", None),
        vae_channels=getattr(info, "latent_channels", None),
        vae_kind=getattr(info, "kind", "kl"),
        model_family=fam,
        model_channels=channels,
        refuse_wrong_family=bool(state.current().host.option("vae_lab_refuse_wrong_family", True)),
    )


def checked(model, vae_file: str | None) -> compatibility.Verdict:
    """`check_compatible`, raising for a refusal and logging a warning verdict."""
    verdict = check_compatible(model, vae_file).raise_if_refused()
    if verdict.level == compatibility.WARN:
        log.warning("VAE Lab: %s", verdict.message)
    return verdict
