"""Errors about what a user supplied (settings, data files): their message is the whole story.

The command line prints such an error's message alone, as the last thing on screen; the
traceback goes to the log file (see ``fsku_kedro.log_setup``).
"""


class UserInputError(ValueError):
    """A setting or an input file that cannot work; the message names where it is and the fix."""
