"""Errors that the CLI turns into one clear message and exit code 2 (no traceback)."""


class DeepM3Error(Exception):
    """Base class for user-facing errors (bad input, bad config, bad checksum)."""


class DataError(DeepM3Error):
    """A data file is missing, empty or malformed; the message names the file and line/column."""


class ConfigError(DeepM3Error):
    """An unknown key, a wrong type or an invalid value in a config file or override."""
