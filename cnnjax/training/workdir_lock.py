"""One run per workdir: an exclusive lock on `workdir/.lock` for as long as a run uses it.

`WorkdirLock(workdir)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `workdir/.lock` and writes the
holder's pid, host and start time into the file. A second run on the same workdir finds the lock
taken and stops at once with a `CnnjaxError` naming that process (its pid, host and start time),
before it writes anything else. The kernel releases a flock when its process dies, `kill -9`
included, so a killed run never leaves the workdir locked: the next run takes the lock and
resumes. The file itself is never deleted (deleting it would let two runs lock two different
files); its contents are only a description of the last holder.

Multi-host runs: only process 0 (the one that writes the config, history and figures) takes the
lock; the other processes of a run belong to the same run. A second multi-host run is refused in
its process 0. flock works across hosts on a local or Lustre/GPFS file system and on NFS (Linux maps
it onto NFS byte-range locks); on a file system without working locks it locks nothing.
"""

import datetime
import errno
import fcntl
import json
import os
import socket

from cnnjax.errors import CnnjaxError

LOCK_FILE = '.lock'


def _holder_description(fd: int) -> str:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    holder = json.loads(os.read(fd, 4096).decode() or '{}')
  except (OSError, ValueError):
    holder = {}
  if not holder:
    return 'another process'
  return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
          f"(started {holder.get('started', '?')})")


class WorkdirLock:
  """A context manager: holds the workdir's lock inside the `with` block (if `enabled`)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self.enabled = enabled
    self._fd: int | None = None

  def acquire(self) -> None:
    if not self.enabled:
      return
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise CnnjaxError(
          f'cannot create the lock file {self.path}: {e.strerror}. The workdir must be writable '
          '(a read-only or full disk? choose another --workdir or free space)') from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = _holder_description(fd)
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise CnnjaxError(f'cannot lock {self.path}: {e.strerror}') from e
      raise CnnjaxError(
          f'the workdir {os.path.dirname(self.path)} is in use by {holder}, which holds '
          f'{self.path}. Two runs on one workdir would overwrite each other\'s checkpoints: wait '
          'for that run to end (or stop it), or use another --workdir') from e
    self._fd = fd
    holder = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec='seconds')}
    try:  # A description for the message above; the lock does not depend on it.
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(holder) + '\n').encode(), 0)
    except OSError:
      pass

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
