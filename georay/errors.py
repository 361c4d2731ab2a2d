"""The one exception type for user mistakes.

A :class:`UserError` is something the person running georay can fix: a missing file, a column
that is not there, a bad value, an S3 bucket that cannot be reached, an output folder written
by another job. The ``georay`` command prints it as one line (``georay <command>: error:
<message>``) and exits with status 2; every other exception is a bug and keeps its traceback.

It subclasses ``ValueError`` so callers that already catch ``ValueError`` for bad input keep
working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for; the message says what and where."""


class JobFailed(RuntimeError):
    """A job ran to its end but its output is wrong (e.g. rows out differ from rows in).

    Its ``summary.json`` is written and says why (``failed``); the ``georay`` command prints
    the message as one line and exits with status 1.
    """
