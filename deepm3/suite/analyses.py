def run_analyses(settings):
    raise NotImplementedError
