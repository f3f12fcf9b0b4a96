"""The one error type for bad input: the command line prints its message and exits with status 2."""


class UserError(Exception):
    """Bad input from the user (a config value, a corpus, a plan, a run folder); the message says the fix."""


class TrainingDiverged(RuntimeError):
    """The loss or gradient became non-finite; the last good checkpoint is kept."""
