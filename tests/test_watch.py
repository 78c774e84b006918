"""clapdex index --watch: changes are picked up once they settle; network mounts are refused."""

from __future__ import annotations

import queue
import threading

import pytest
from sounds import sox_tone

from indexer.scan import network_filesystem
from indexer.watch import watch
from search.config import ConfigError, load_settings
from search.library import Library

MOUNTS = """\
sysfs /sys sysfs rw 0 0
/dev/sda1 / ext4 rw 0 0
server:/export/sfx /mnt/sfx nfs4 rw,relatime 0 0
//nas/audio /mnt/nas\\040share cifs rw 0 0
/dev/sdb1 /mnt/sfx/local-cache ext4 rw 0 0
"""


@pytest.fixture
def mounts(tmp_path):
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return str(path)


def test_network_file_systems_are_recognised_by_their_mount(mounts):
    assert network_filesystem("/mnt/sfx/doors/creak.wav", mounts) == "nfs4"
    assert network_filesystem("/mnt/nas share/x", mounts) == "cifs"
    assert network_filesystem("/mnt/sfx/local-cache/x.wav", mounts) is None  # the deeper mount wins
    assert network_filesystem("/home/me/sfx", mounts) is None


def test_watching_a_network_mount_is_refused_unless_forced(tmp_path, mounts, tiny_encoder):
    with pytest.raises(ConfigError, match="network file system.*--force-network"):
        with Library(load_settings(tmp_path / "home"), create=True) as library:
            watch(library, ["/mnt/sfx"], mounts=mounts)
    assert not (tmp_path / "home").exists()  # refused before anything was made


def test_watch_indexes_changes_after_they_settle(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    sox_tone(sounds / "first.wav", 1)
    library = Library(load_settings(tmp_path / "home", batch_size=4), create=True, encoder=tiny_encoder)
    reports, stop = queue.Queue(), threading.Event()
    watcher = threading.Thread(
        target=watch, args=(library, [sounds]),
        kwargs=dict(interval=0.1, debounce=0.3, stop=stop, after_run=reports.put),
    )
    watcher.start()
    try:
        assert reports.get(timeout=60).indexed == 1
        sox_tone(sounds / "second.wav", 1, tone="sine 900")
        added = reports.get(timeout=60)
        assert (added.indexed, added.unchanged) == (1, 1)
        (sounds / "first.wav").unlink()
        assert reports.get(timeout=60).removed == 1
        assert reports.empty()  # no run without a change
    finally:
        stop.set()
        watcher.join(timeout=60)
        library.close()
    assert not watcher.is_alive()
