"""The one exception type for bad input data, shared by every dataset loader."""


class DataError(ValueError):
    """Bad or missing input data; the message names the file, dataset or config key at fault."""
