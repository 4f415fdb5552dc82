"""Errors about what a user supplied (settings, data files) or must fix on the machine (free disk):
their message is the whole story.

The command line prints such an error's message alone, as the last thing on screen; the
traceback goes to the log file (see ``fsku_kedro.log_setup``).
"""


class UserInputError(ValueError):
    """A setting or an input file that cannot work; the message names where it is and the fix."""


class DiskSpaceError(UserInputError):
    """Too little free disk for an artefact; the message names its path, the bytes it needs and those
    free, and the command that removes old versions."""
