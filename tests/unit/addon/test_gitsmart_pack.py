"""addon.gitpack: fast-forward proofs from real packs made by git, and malformed packs refused."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest
from gitrepo import Repo

from addon.gitpack import PackError, apply_delta, read_commits


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "r")


def test_a_fast_forward_is_proven_from_the_pushed_commits(repo: Repo) -> None:
    base = repo.commit()
    mid = repo.commit()
    tip = repo.commit()
    commits = read_commits(repo.pack(tip, base))
    assert set(commits.parents) == {mid, tip}
    assert commits.fast_forward(base, tip) is None


def test_a_merge_reaches_the_old_tip_through_either_parent(repo: Repo) -> None:
    base = repo.commit()
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side\n", "side.txt")
    repo.git("checkout", "-q", "main")
    main = repo.commit()
    repo.git("merge", "-q", "--no-edit", "side")
    merge = repo.head()
    assert read_commits(repo.pack(merge, side)).fast_forward(side, merge) is None
    assert read_commits(repo.pack(merge, main)).fast_forward(main, merge) is None
    assert read_commits(repo.pack(merge, base)).fast_forward(base, merge) is None


def test_a_rewritten_history_is_not_a_fast_forward(repo: Repo) -> None:
    base = repo.commit()
    old = repo.commit()
    repo.git("reset", "-q", "--hard", base)
    new = repo.commit("rewritten\n")
    # What `git push --force` sends: the server has old (and base), the pack holds new.
    why = read_commits(repo.pack(new, old)).fast_forward(old, new)
    assert why and "not an ancestor" in why


def test_new_already_on_the_server_cannot_be_proven(repo: Repo) -> None:
    old = repo.commit()
    new = repo.commit()
    # Everything is on the server already: the pack is empty.
    why = read_commits(repo.pack(new, new)).fast_forward(old, new)
    assert why and "not among the pushed commits" in why


def test_thin_packs_with_deltas_still_show_every_commit(repo: Repo) -> None:
    base = repo.commit("x" * 5000 + "\n")
    tips = [repo.commit("x" * 5000 + f"\n{i}\n") for i in range(5)]
    commits = read_commits(repo.pack(tips[-1], base, thin=True))
    assert set(tips) <= set(commits.parents)
    assert commits.fast_forward(base, tips[-1]) is None


@pytest.mark.parametrize("ofs", [True, False], ids=["offset-deltas", "ref-deltas"])
def test_delta_compressed_commits_are_rebuilt(repo: Repo, ofs: bool) -> None:
    base = repo.commit()
    long_message = "a commit message long enough for git to store it as a delta\n" * 40
    tips = []
    for i in range(6):
        (repo.path / "f").write_text(f"{i}\n")
        repo.git("add", "f")
        repo.git("commit", "-q", "-m", long_message + f"{i}\n")
        tips.append(repo.head())
    pack = repo.pack(tips[-1], base, ofs=ofs)
    assert _delta_commits(pack) == (6 if ofs else 7), "git stored no commit as a delta: the test would prove nothing"
    commits = read_commits(pack)
    assert set(tips) <= set(commits.parents)
    assert commits.fast_forward(base, tips[-1]) is None


def test_sha256_repositories(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "s", object_format="sha256")
    base = repo.commit()
    tip = repo.commit()
    commits = read_commits(repo.pack(tip, base), oid_length=64)
    assert commits.fast_forward(base, tip) is None and len(tip) == 64


# --- malformed ----------------------------------------------------------------------------------


def test_malformed_packs_are_refused(repo: Repo) -> None:
    base = repo.commit()
    tip = repo.commit()
    pack = repo.pack(tip, base)
    with pytest.raises(PackError, match="not a version"):
        read_commits(b"PACX" + pack[4:])
    with pytest.raises(PackError, match="truncated|corrupt"):
        read_commits(pack[:-25] + pack[-20:])
    with pytest.raises(PackError, match="truncated"):
        read_commits(pack[:40])
    with pytest.raises(PackError, match="checksum"):
        read_commits(pack[:-1] + bytes([pack[-1] ^ 1]))
    with pytest.raises(PackError, match="bytes after"):
        read_commits(pack + b"extra")


def test_an_object_larger_than_declared_is_refused() -> None:
    assert read_commits(_pack([(3, b"hello", 5)])).parents == {}
    with pytest.raises(PackError, match="more than its declared size"):
        read_commits(_pack([(3, b"hello world", 5)]))
    with pytest.raises(PackError, match="less than its declared size"):
        read_commits(_pack([(3, b"hi", 5)]))


def test_a_pack_too_large_to_inflate_is_refused() -> None:
    with pytest.raises(PackError, match="too large to check"):
        read_commits(_pack([(3, b"x" * 1000, 1000)] * 3), max_inflated=2500)


def test_a_zip_bomb_declaring_its_true_size_is_refused_before_inflating() -> None:
    bomb = _pack([(3, b"\0" * (4 * 1024 * 1024), 4 * 1024 * 1024)])
    assert len(bomb) < 10_000
    with pytest.raises(PackError, match="too large"):
        read_commits(bomb, max_inflated=1024 * 1024)


def test_unknown_object_types_and_dangling_deltas_are_refused() -> None:
    with pytest.raises(PackError, match="unknown object type"):
        read_commits(_pack([(5, b"x", 1)]))
    # An offset delta (type 6, size 1) whose base would be 5 bytes before it: no object starts there.
    with pytest.raises(PackError, match="base offset"):
        read_commits(_pack_with_header(b"\x61\x05", zlib.compress(b"\x00")))


def test_delta_instructions() -> None:
    base = b"0123456789"
    # src 10, dst 7: copy 4 bytes from offset 2, insert "abc"
    delta = bytes([10, 7, 0x80 | 0x01 | 0x10, 2, 4, 3]) + b"abc"
    assert apply_delta(base, delta) == b"2345abc"
    with pytest.raises(PackError, match="wrong size"):
        apply_delta(b"short", delta)
    with pytest.raises(PackError, match="reserved"):
        apply_delta(base, bytes([10, 1, 0]))
    with pytest.raises(PackError, match="past the end"):
        apply_delta(base, bytes([10, 20, 0x80 | 0x01 | 0x10, 5, 20]))
    with pytest.raises(PackError, match="more than its target"):
        apply_delta(base, bytes([10, 1, 2]) + b"ab")


# --- pack builders --------------------------------------------------------------------------------


def _header(kind: int, size: int) -> bytes:
    first = (kind << 4) | (size & 15)
    size >>= 4
    out = bytearray()
    while size:
        out.append(first | 0x80)
        first = size & 0x7F
        size >>= 7
    out.append(first)
    return bytes(out)


def _raw_pack(objects: list[tuple[int, bytes, int]]) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, len(objects))
    for kind, content, declared in objects:
        body += _header(kind, declared) + zlib.compress(content)
    return body


def _pack(objects: list[tuple[int, bytes, int]]) -> bytes:
    body = _raw_pack(objects)
    return body + hashlib.sha1(body).digest()


def _pack_with_header(header: bytes, data: bytes) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, 1) + header + data
    return body + hashlib.sha1(body).digest()


def _delta_commits(pack: bytes) -> int | None:
    """The delta type (6 offset, 7 ref) of the pack's first delta object, None if it has none."""
    pos = 12
    view = memoryview(pack)
    for _ in range(struct.unpack(">I", pack[8:12])[0]):
        byte = view[pos]
        kind = (byte >> 4) & 7
        while view[pos] & 0x80:
            pos += 1
        pos += 1
        if kind in (6, 7):
            return kind
        stream = zlib.decompressobj()
        stream.decompress(bytes(view[pos:]))
        pos = len(pack) - len(stream.unused_data)
    return None
