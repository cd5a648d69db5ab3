"""The one exception type users see: the CLI prints its message as a single line."""


class BusganError(Exception):
    """A problem with the user's input or environment.

    The message must name the file, folder or key at fault and say how to fix it, on one line.
    """
