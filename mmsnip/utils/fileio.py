# Copyright (c) mmsnip contributors. All rights reserved.
"""One home for writing files safely (no torch, no mmdet).

Every file mmsnip writes (chip caches, proposal files and shards, exported
chips, demo annotations, pictures) goes through :func:`atomic_open`:
readers never see a half-written file, a failed write leaves no temporary
file behind, and the final file gets the permissions the user's umask
gives (``tempfile.mkstemp`` alone would create it ``0600``). A writer
killed mid-write (SIGTERM, SIGKILL: no clean-up runs) leaves its
temporary file, named with its host and process; files written once per
run (chip caches, proposal files) pass ``remove_leftovers=True``, so the
next write of the same file removes those of writers that are gone.
:func:`atomic_folder` does the same for a folder of files (the demo
data's images).

The tools use the checked helpers below it: :func:`check_output_dir` and
:func:`check_output_file` before any work, :func:`write_json`,
:func:`write_text`, :func:`write_image` (``cv2.imwrite`` only returns
False) and :func:`save_figure` for the writes; a failure is a
``UserInputError`` naming the file (one ``error:`` line, exit status 2).
"""
import contextlib
import os
import os.path as osp
import re
import shutil
import socket
import tempfile
from typing import IO, Dict, Iterator, Optional

from .processes import pid_alive


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_namespace() -> int:
    """The inode of this process's pid namespace (Linux), else 0."""
    try:
        return os.stat('/proc/self/ns/pid').st_ino
    except OSError:
        return 0


def _host_and_namespace() -> str:
    """``HOST-PIDNS``: where the pids of temporary files' names are
    valid."""
    host = re.sub(r'[^A-Za-z0-9_.-]', '_', socket.gethostname())
    return f'{host}-{_pid_namespace()}'


def _writer_tag(pid: Optional[int] = None) -> str:
    """``HOST-PIDNS-PID`` of process ``pid`` of this host and namespace
    (default: this one), the owner part of a temporary file's name."""
    return f'{_host_and_namespace()}-{os.getpid() if pid is None else pid}'


def _owned_prefix(name: str) -> str:
    """``.{name}.{HOST-PIDNS-PID}.``: the start of this process's
    temporary files and folders for ``name`` (``tempfile`` adds a random
    part and ``.tmp``), which :func:`_remove_leftovers` reads back."""
    return f'.{name}.{_writer_tag()}.'


# ``.{name}.{HOST-PIDNS-PID}.{mkstemp's random part}.tmp``
_TMP_OWNER = re.compile(r'(?P<tag>.+-\d+)-(?P<pid>\d+)\.[a-z0-9_]+\.tmp')


def _remove_leftovers(folder: str, name: str) -> None:
    """Remove the temporary files of ``folder/name`` that writers of this
    host and pid namespace left when they were killed (their process is
    gone). A live writer's, another host's or container's, and names
    without an owner are kept."""
    if not _pid_namespace():  # pids cannot be judged: keep them all
        return
    prefix, here = f'.{name}.', _host_and_namespace()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for other in names:
        owner = _TMP_OWNER.fullmatch(other[len(prefix):]) \
            if other.startswith(prefix) else None
        if owner is None or owner['tag'] != here:
            continue
        pid = int(owner['pid'])
        if pid != os.getpid() and not pid_alive(pid):
            _remove(osp.join(folder, other))


def _remove(path: str) -> None:
    """Remove a file or a folder tree; errors ignored."""
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'wb',
                remove_leftovers: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on
    success, remove it on any failure.

    Example::

        with atomic_open('out/table.npz') as f:
            np.savez(f, boxes=boxes)

    Args:
        path (str): Final file. Its folder must exist and be writable
            (``OSError`` otherwise, raised before anything is written).
        mode (str): ``'wb'`` (default) or ``'w'`` (text, UTF-8).
        remove_leftovers (bool): First remove the temporary files of
            ``path`` that killed writers of this host left (their process
            is gone). It lists the folder: for files written once per
            run, not for each file of a folder of many.

    Yields:
        IO: The open temporary file, named
        ``.{name}.{HOST-PIDNS-PID}.{random}.tmp``.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got "
                         f'{mode!r}')
    folder = osp.dirname(osp.abspath(path))
    if remove_leftovers:
        _remove_leftovers(folder, osp.basename(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=_owned_prefix(osp.basename(path)), suffix='.tmp')
    try:
        kwargs = {} if mode == 'wb' else dict(encoding='utf-8')
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """Yield a new temporary folder beside ``path`` to fill; on success
    it replaces ``path`` (an old folder there is removed first,
    :func:`remove_folder`, so ``path`` is briefly absent), on any failure
    it is removed. Folders that killed writers of ``path`` left are
    removed first (as :func:`atomic_open` with ``remove_leftovers``).

    Example::

        with atomic_folder('data/demo/train') as tmp:
            write_image(osp.join(tmp, 'a.jpg'), img)

    Yields:
        str: The temporary folder, ``.{name}.{HOST-PIDNS-PID}.{random}.tmp``.
    """
    folder, name = osp.split(osp.abspath(path))
    _remove_leftovers(folder, name)
    tmp = tempfile.mkdtemp(dir=folder, prefix=_owned_prefix(name),
                           suffix='.tmp')
    try:
        yield tmp
        if osp.isdir(path) and not osp.islink(path):
            _remove_folder_aside(folder, name)  # leftovers removed above
        elif osp.lexists(path):
            os.remove(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def remove_folder(path: str) -> None:
    """Remove the folder ``path`` (if there is one), renamed aside first
    (``.{name}.{HOST-PIDNS-PID}.{random}.tmp``), so that an interruption
    never leaves it half there: ``path`` is gone at once, and what an
    interrupted removal leaves aside goes with the next
    :func:`remove_folder` or :func:`atomic_folder` of that name once its
    process is gone (a killed writer's leftover)."""
    if not osp.isdir(path) or osp.islink(path):
        return
    folder, name = osp.split(osp.abspath(path))
    _remove_leftovers(folder, name)
    _remove_folder_aside(folder, name)


def _remove_folder_aside(folder: str, name: str) -> None:
    """Rename the folder ``folder/name`` aside (onto a new, empty folder
    of an owned name: atomic), then delete it."""
    aside = tempfile.mkdtemp(dir=folder, prefix=_owned_prefix(name),
                             suffix='.tmp')
    os.replace(osp.join(folder, name), aside)
    shutil.rmtree(aside)


def atomic_write_bytes(path: str, data: bytes,
                       remove_leftovers: bool = False) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_open`."""
    with atomic_open(path, 'wb', remove_leftovers) as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_open`."""
    with atomic_open(path, 'w') as f:
        f.write(text)


# ---------------------------------------------------------------------------
# Outputs of the tools: checked before the work starts, every write checked.
# Failures raise ``UserInputError`` (``error: ...`` and exit 2 under
# ``mmsnip.utils.preflight.run_cli``) naming the option and the path.


def _user_error(msg: str) -> Exception:
    from mmsnip.utils.preflight import UserInputError
    return UserInputError(msg)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def check_output_dir(folder: str, what: str = '--out-dir') -> str:
    """Create ``folder`` if missing and check that files can be made in it.

    Checked by creating (and removing) a temporary file, so it holds for
    root and read-only mounts alike, where ``os.access`` misleads.

    Args:
        folder (str): The output folder.
        what (str): The option or setting that names it, for the message.

    Returns:
        str: ``folder``.

    Raises:
        UserInputError: e.g. ``--out-dir "a.txt/x": cannot create the folder
        (Not a directory)`` or ``--out-dir "/ro": the folder is not writable
        (Read-only file system)``.
    """
    folder = folder or '.'
    if osp.exists(folder) and not osp.isdir(folder):
        raise _user_error(f'{what} "{folder}" is a file, not a folder')
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise _user_error(f'{what} "{folder}": cannot create the folder '
                          f'({_reason(e)})') from None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.mmsnip-check-')
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise _user_error(f'{what} "{folder}": the folder is not writable '
                          f'({_reason(e)})') from None
    return folder


def check_output_file(path: str, what: str = '--out',
                      suffixes: tuple = (),
                      inputs: Optional[Dict[str, Optional[str]]] = None
                      ) -> str:
    """Check that ``path`` can be written: its folder (created if missing)
    is writable, ``path`` is not a folder, it ends with one of
    ``suffixes`` (when given, e.g. ``('.json',)``) and it is none of the
    command's ``inputs`` (writing it would destroy one).

    Args:
        path (str): The file to write.
        what (str): Its option or argument, for messages.
        suffixes (tuple): Allowed endings; empty: any.
        inputs (dict, optional): ``{option: path}`` of the files the
            command reads (None values and paths that do not exist are
            skipped); the same file by any name (links included) is an
            error.

    Returns:
        str: ``path``.

    Raises:
        UserInputError: Naming ``what`` and ``path`` (and the input).
    """
    if not path:
        raise _user_error(f'{what}: empty file name')
    if suffixes and not path.endswith(tuple(suffixes)):
        raise _user_error(f'{what} "{path}" must end with '
                          f'{" or ".join(suffixes)}')
    if osp.isdir(path):
        raise _user_error(f'{what} "{path}" is a folder, not a file')
    for name, source in (inputs or {}).items():
        if source and osp.exists(path) and osp.exists(source) and \
                osp.samefile(path, source):
            raise _user_error(
                f'{what} "{path}" is the input {name} "{source}": writing '
                'it would destroy what the command reads; write to another '
                'file')
    check_output_dir(osp.dirname(path) or '.', f'{what} "{path}": folder')
    return path


def check_input_file(path: str, what: str) -> str:
    """Check that the input file ``path`` exists and is a file.

    Returns:
        str: ``path``.

    Raises:
        UserInputError: ``'{what} "{path}" does not exist'`` (or ``is a
            folder, not a file``).
    """
    if not osp.isfile(path):
        raise _user_error(f'{what} "{path}" ' + (
            'is a folder, not a file' if osp.isdir(path)
            else 'does not exist'))
    return path


@contextlib.contextmanager
def checked_write(path: str, advice: str = '') -> Iterator[None]:
    """Turn an ``OSError`` of the block into ``UserInputError`` naming
    ``path`` (a full disk, a folder removed mid-run), followed by
    ``'; ' + advice`` when given (e.g. how to resume)."""
    try:
        yield
    except OSError as e:
        raise _user_error(f'cannot write "{path}": {_reason(e)}' +
                          (f'; {advice}' if advice else '')) from None


def write_json(path: str, obj, **kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``kwargs`` go to
    ``json.dump``); ``UserInputError`` if it cannot be written."""
    import json
    with checked_write(path), atomic_open(path, 'w') as f:
        json.dump(obj, f, **kwargs)


def write_text(path: str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically; ``UserInputError`` if
    it cannot be written."""
    with checked_write(path):
        atomic_write_text(path, text)


def write_image(path: str, img, params=None) -> None:
    """Write a BGR uint8 image with OpenCV, format from the extension.

    ``cv2.imwrite`` returns False (no exception) when it cannot write;
    this encodes first (``cv2.imencode``), checks the result, and writes the
    bytes atomically.

    Args:
        path (str): ``.jpg``, ``.png``, ... file.
        img (np.ndarray): ``(H, W, 3)`` or ``(H, W)`` uint8, BGR.
        params (list, optional): ``cv2.imencode`` flags.

    Raises:
        UserInputError: The extension has no encoder, encoding failed, or
            the file cannot be written.
    """
    import cv2
    ext = osp.splitext(path)[1]
    try:
        ok, buf = cv2.imencode(ext or '.none', img, params or [])
    except cv2.error:
        ok, buf = False, None
    if not ok:
        raise _user_error(f'cannot write image "{path}": OpenCV could not '
                          f'encode it as "{ext}" (use .jpg or .png)')
    with checked_write(path):
        atomic_write_bytes(path, buf.tobytes())


def save_figure(fig, path: str, **kwargs) -> None:
    """``fig.savefig`` to ``path`` atomically (format from the extension,
    ``kwargs`` to ``savefig``); ``UserInputError`` if it cannot be written
    or the extension is not a matplotlib format."""
    fmt = osp.splitext(path)[1].lstrip('.').lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise _user_error(f'cannot write figure "{path}": matplotlib writes '
                          f'{", ".join("." + k for k in sorted(supported))}')
    with checked_write(path), atomic_open(path, 'wb') as f:
        fig.savefig(f, format=fmt, **kwargs)
