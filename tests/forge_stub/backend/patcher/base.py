"""backend/patcher/base.py: `ModelPatcher` wraps a module with its load/offload devices and
`model_options` (e.g. `model_vae_decode_wrapper`). Simplified: no LoRA patching/backups."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, current_device=None, **kwargs):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.current_device = current_device or offload_device
        self.model_options = {"transformer_options": {}}
        self.patches = {}
        self.backup = {}

    def clone(self):
        n = ModelPatcher(self.model, self.load_device, self.offload_device, current_device=self.current_device)
        n.patches = {k: list(v) for k, v in self.patches.items()}
        n.model_options = dict(self.model_options)
        return n
