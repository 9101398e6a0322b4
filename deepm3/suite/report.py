def write(settings):
    raise NotImplementedError
