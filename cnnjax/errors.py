"""Errors cnnjax raises for bad input.

Every error a user can cause (a missing file, a malformed file, a config value that makes no
sense) is one of these, with a message that names the file, field or value and says what would fix
it. `launch.py` prints them without a traceback.
"""


class CnnjaxError(Exception):
  """Base class of the errors caused by the user's input, not by a bug."""


class DataError(CnnjaxError):
  """A data set is missing, malformed or inconsistent."""


class ConfigError(CnnjaxError):
  """A config field has a value cnnjax cannot use."""
