"""Installed extensions (modules/extensions.py, simplified: no git info, no metadata ordering).

Builtin directories first, then `<data>/extensions`, each in sorted order; the canonical name
is the directory name lower-cased (metadata.ini `Name` is ignored, as in the real WebUI).
"""

import configparser
import os

from modules import errors, paths_internal, shared


class ExtensionMetadata:
    filename = "metadata.ini"

    def __init__(self, path, canonical_name):
        self.config = configparser.ConfigParser()
        filepath = os.path.join(path, self.filename)
        if os.path.isfile(filepath):
            try:
                self.config.read(filepath)
            except Exception:
                errors.report(f"Error reading {self.filename} for extension {canonical_name}.", exc_info=True)
        self.canonical_name = canonical_name.lower().strip()  # the real one overwrites [Extension] Name too
        self.requires = None

    def get_script_requirements(self, field, section, extra_section=None):
        x = self.config.get(section, field, fallback='')
        if extra_section:
            x = x + ', ' + self.config.get(extra_section, field, fallback='')
        return [v.strip() for v in x.replace(",", " ").split() if v.strip()]


class Extension:
    def __init__(self, name, path, enabled=True, is_builtin=False, metadata=None):
        self.name = name
        self.path = path
        self.enabled = enabled
        self.status = ''
        self.can_update = False
        self.is_builtin = is_builtin
        self.metadata = metadata if metadata else ExtensionMetadata(self.path, name.lower())
        self.canonical_name = self.metadata.canonical_name

    def list_files(self, subdir, extension):
        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        from modules import scripts
        res = []
        for filename in sorted(os.listdir(dirpath)):
            res.append(scripts.ScriptFile(self.path, filename, os.path.join(dirpath, filename)))
        return [x for x in res if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]


extensions: list[Extension] = []
extension_paths: dict[str, Extension] = {}
loaded_extensions: dict[str, Extension] = {}


def active():
    if shared.cmd_opts.disable_all_extensions or shared.opts.disable_all_extensions == "all":
        return []
    elif shared.cmd_opts.disable_extra_extensions or shared.opts.disable_all_extensions == "extra":
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]


def list_extensions():
    extensions.clear()
    extension_paths.clear()
    loaded_extensions.clear()
    found = []
    for dirname, is_builtin in ((paths_internal.extensions_builtin_dir, True), (paths_internal.extensions_dir, False)):
        if not os.path.isdir(dirname):
            continue
        for extension_dirname in sorted(os.listdir(dirname)):
            path = os.path.join(dirname, extension_dirname)
            if not os.path.isdir(path):
                continue
            canonical_name = extension_dirname
            metadata = ExtensionMetadata(path, canonical_name)
            already = loaded_extensions.get(metadata.canonical_name)
            if already is not None:
                errors.report(f'Duplicate canonical name "{canonical_name}" found in extensions "{extension_dirname}" and "{already.name}". Former will be discarded.', exc_info=False)
                continue
            extension = Extension(name=extension_dirname, path=path,
                                  enabled=extension_dirname not in shared.opts.disabled_extensions,
                                  is_builtin=is_builtin, metadata=metadata)
            loaded_extensions[metadata.canonical_name] = extension
            found.append(extension)
    extensions.extend(found)
    for extension in extensions:
        extension_paths[os.path.realpath(extension.path)] = extension
        extension_paths[os.path.abspath(extension.path)] = extension


def find_extension(filename):
    parentdir = os.path.dirname(os.path.abspath(filename))
    while parentdir != os.path.dirname(parentdir):
        extension = extension_paths.get(parentdir)
        if extension is not None:
            return extension
        parentdir = os.path.dirname(parentdir)
    return None
