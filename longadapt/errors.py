"""The one exception type for errors a user can cause (bad path, bad format, bad option)."""


class LongAdaptError(Exception):
    """An error the user can fix. The message says what is wrong and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """
