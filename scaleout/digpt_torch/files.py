"""File helpers the run folder's writers and the dataset check share: sha256 of a file, fsync of a file or folder."""
import hashlib
import os


def sha256(path):
    """The file's sha256, hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def fsync_file(path):
    """Flushes a file to disk (nothing when it does not exist)."""
    if not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(d):
    """Flushes a folder's entries (a rename in it) to disk, where the file system allows it."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # network mounts and FUSE refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(fd)
