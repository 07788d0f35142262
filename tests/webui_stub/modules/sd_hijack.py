"""The model hijack (modules/sd_hijack.py), reduced to counters: tests can see undo/redo around reloads."""


class StableDiffusionModelHijack:
    def __init__(self):
        self.hijacks = 0
        self.undos = 0
        self.comments = []
        self.extra_generation_params = {}
        self.embedding_db = None

    def hijack(self, m):
        self.hijacks += 1
        m.is_hijacked = True

    def undo_hijack(self, m):
        self.undos += 1
        m.is_hijacked = False

    def apply_circular(self, enable):
        pass

    def clear_comments(self):
        self.comments = []
        self.extra_generation_params = {}


model_hijack = StableDiffusionModelHijack()
