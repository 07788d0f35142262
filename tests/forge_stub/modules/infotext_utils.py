"""modules/infotext_utils.py, Forge's: A1111's parser plus Forge's VAE/TE rewrite.

Faithful (infotext_utils.py 429-476, 479-481, 515-525, 558-560): after parsing, a "VAE" entry
is POPPED and becomes the module list (else the `Module N` stems are matched against
`main_entry.module_list`); when that list differs from the current
`forge_additional_modules` it is stored as `res['VAE/TE']` (a list of basenames), which
`infotext_to_setting_name_mapping` maps to `forge_additional_modules`: the paste offers a
"VAE/TE" override chip, which reloads the whole checkpoint with that module. So a "VAE"
written into the infotext never reaches a paste field of that name unless something puts
it back (e.g. an `on_infotext_pasted` callback, which runs after this parser).
`Hires VAE/TE` defaults to ['Use same choices'].
"""

import os
from ast import literal_eval

from modules._a1111 import inherit

inherit(globals(), "infotext_utils")

_a1111_parse_generation_parameters = parse_generation_parameters  # noqa: F821

infotext_to_setting_name_mapping = [
    ('VAE/TE', 'forge_additional_modules'),
]


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None):
    from modules_forge import main_entry

    res = _a1111_parse_generation_parameters(x, skip_fields)
    modules = []
    hr_modules = []
    vae = res.pop('VAE', None)  # old form
    if vae:
        modules = [vae]
    else:
        for key in res:
            if key.startswith('Module '):
                added = False
                for knownmodule in main_entry.module_list.keys():
                    filename, _ = os.path.splitext(knownmodule)
                    if res[key] == filename:
                        added = True
                        modules.append(knownmodule)
                        break
                if not added:
                    modules.append(res[key])
            elif key.startswith('Hires Module '):
                for knownmodule in main_entry.module_list.keys():
                    filename, _ = os.path.splitext(knownmodule)
                    if res[key] == filename:
                        hr_modules.append(knownmodule)
                        break
    if modules:
        basename_modules = [os.path.basename(m) for m in shared.opts.forge_additional_modules]  # noqa: F821
        if sorted(modules) != sorted(basename_modules):
            res['VAE/TE'] = modules
    if 'Hires Module 1' in res:
        res['Hires VAE/TE'] = hr_modules
    else:
        res['Hires VAE/TE'] = ['Use same choices']
    return res


def create_override_settings_dict(text_pairs):
    res = {}
    params = {}
    for pair in text_pairs:
        k, v = pair.split(":", maxsplit=1)
        params[k] = v.strip()
    mapping = [(info.infotext, k) for k, info in shared.opts.data_labels.items() if info.infotext]  # noqa: F821
    for param_name, setting_name in mapping + infotext_to_setting_name_mapping:
        value = params.get(param_name, None)
        if value is None:
            continue
        if setting_name == "forge_additional_modules":
            res[setting_name] = literal_eval(value)
            continue
        res[setting_name] = shared.opts.cast_value(setting_name, value)  # noqa: F821
    return res


def get_override_settings(params, *, skip_fields=None):
    res = []
    mapping = [(info.infotext, k) for k, info in shared.opts.data_labels.items() if info.infotext]  # noqa: F821
    for param_name, setting_name in mapping + infotext_to_setting_name_mapping:
        if param_name in (skip_fields or {}):
            continue
        v = params.get(param_name, None)
        if v is None:
            continue
        if setting_name in ["sd_model_checkpoint", "forge_additional_modules"]:
            if shared.opts.disable_weights_auto_swap:  # noqa: F821
                continue
        v = shared.opts.cast_value(setting_name, v)  # noqa: F821
        current_value = getattr(shared.opts, setting_name, None)  # noqa: F821
        if v == current_value:
            continue
        res.append((param_name, setting_name, v))
    return res
