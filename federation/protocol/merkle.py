"""The hub's append-only log as a Merkle tree, hashed as in RFC 9162 (Certificate Transparency v2), §2.1.

A checkpoint is (tree size, root hash). A node that holds an old checkpoint asks the hub for a consistency proof
to a new one and checks it with :func:`verify_consistency`: if it verifies, the old log is a prefix of the new one,
so the hub neither rewrote nor dropped an entry, nor showed this node a fork. An inclusion proof
(:func:`verify_inclusion`) shows that one entry is in the log at a given index under a checkpoint.

Terms used below:

* leaf hash: ``SHA-256(0x00 || entry)`` (:func:`leaf_hash`); interior node: ``SHA-256(0x01 || left || right)``.
* perfect node ``(level, index)``: the root of the perfect subtree of ``2**level`` leaves covering leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. Once a log has that many leaves,
  the node never changes, so a store keeps it in a table keyed ``(level, index)`` and answers ``get_node`` from it.
* the proof builders (:func:`inclusion_proof`, :func:`consistency_proof`, :func:`root_from_nodes`) read only
  O(log n) perfect nodes through ``get_node``; a non-perfect subtree on the right edge of the tree is hashed from its
  perfect pieces. :class:`Frontier` keeps the perfect nodes along the right edge (O(log n) memory) and reports which
  perfect nodes each append creates, so the store persists exactly those.

Strictness follows the transparency-dev/merkle verifier and its test vectors: hashes are exactly 32 bytes, the
proof has exactly the length the sizes imply (no preceding or trailing component), and a consistency proof from an
empty tree (size 0) is an error, because there is nothing to check.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from federation.protocol.errors import TrustError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ConsistencyProofError",
    "Frontier",
    "InclusionProofError",
    "MerkleProofError",
    "NodeGetter",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_nodes",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash: SHA-256."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162 §2.1.1: the hash of the empty string)."""

NodeGetter = Callable[[int, int], bytes]
"""``get_node(level, index)``: the hash of the perfect subtree of ``2**level`` leaves starting at leaf
``index * 2**level`` (level 0: the leaf hash of entry ``index``)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleProofError(TrustError):
    """A Merkle inclusion or consistency proof does not verify, or its inputs are malformed."""

    reason = "merkle-proof-invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InclusionProofError(MerkleProofError):
    """An inclusion proof does not show the leaf at that index under that root."""

    reason = "inclusion-proof-invalid"


class ConsistencyProofError(MerkleProofError):
    """A consistency proof does not show the first tree to be a prefix of the second."""

    reason = "consistency-proof-invalid"


# -- hashing ------------------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """The leaf hash of one log entry: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf HASHES, by the recursive definition of RFC 9162 §2.1.1.

    This is the reference implementation: it reads every leaf. The log itself uses :class:`Frontier` and
    :func:`root_from_nodes`, which read O(log n) nodes.
    """
    for h in leaves:
        _require_hash(h, "leaf hash", ValueError)
    return _mth(leaves, 0, len(leaves))


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[start]
    k = _split(n)
    return node_hash(_mth(leaves, start, start + k), _mth(leaves, start + k, end))


# -- building proofs from perfect nodes -----------------------------------------------------------------


def subtree_hash(start: int, end: int, get_node: NodeGetter) -> bytes:
    """MTH of leaves ``[start, end)``, composed from the perfect nodes that cover the range.

    The range must be a subtree of some log's Merkle tree: non-empty, and ``start`` a multiple of the smallest
    power of two ``>= end - start`` (every range the proofs use is such). It reads one perfect node per set bit
    of ``end - start``. Raises ``ValueError`` for any other range.
    """
    _require_index(start, "start")
    _require_index(end, "end")
    n = end - start
    if n <= 0:
        raise ValueError(f"empty or reversed range [{start}, {end})")
    if start % (1 << (n - 1).bit_length()) != 0:
        raise ValueError(f"range [{start}, {end}) is not a subtree of the log's Merkle tree")
    # Perfect pieces from left to right, largest first: one per set bit of n, each aligned to its own size.
    pieces: list[bytes] = []
    offset = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            pieces.append(_read(get_node, level, offset >> level))
            offset += 1 << level
    # MTH splits off the largest power of two on the left at every step, so fold from the right.
    acc = pieces[-1]
    for piece in reversed(pieces[:-1]):
        acc = node_hash(piece, acc)
    return acc


def root_from_nodes(size: int, get_node: NodeGetter) -> bytes:
    """The root of the log's first ``size`` leaves, from at most log2(size) + 1 perfect nodes."""
    _require_index(size, "size")
    if size == 0:
        return EMPTY_ROOT
    return subtree_hash(0, size, get_node)


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves (RFC 9162 §2.1.3.1).

    Ordered from the leaf's sibling up to the root's child, as :func:`verify_inclusion` expects. Reads O(log n)
    perfect nodes. Raises ``ValueError`` unless ``0 <= index < size``.
    """
    _require_index(index, "index")
    _require_index(size, "size")
    if index >= size:
        raise ValueError(f"index {index} is not below size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    # PATH(m, D[start:end]) = PATH(m', one side) : MTH(other side); walk down, collect, then reverse.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(subtree_hash(start + k, end, get_node))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, get_node))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, get_node: NodeGetter) -> list[bytes]:
    """The proof that the first ``size1`` leaves are a prefix of the first ``size2`` (RFC 9162 §2.1.4.1).

    Empty when ``size1 == size2``. Reads O(log n) perfect nodes. Raises ``ValueError`` unless
    ``0 < size1 <= size2``: a proof from the empty tree proves nothing and :func:`verify_consistency` refuses it.
    """
    _require_index(size1, "size1")
    _require_index(size2, "size2")
    if size1 == 0:
        raise ValueError("a consistency proof from the empty tree proves nothing")
    if size1 > size2:
        raise ValueError(f"size1 {size1} is above size2 {size2}")
    proof: list[bytes] = []
    start, end, m = 0, size2, size1
    complete = True  # the b flag of SUBPROOF: is [start, start + m) the whole old tree?
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(start + k, end, get_node))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, get_node))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(subtree_hash(start, end, get_node))
    proof.reverse()
    return proof


# -- verifying proofs (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------------


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves whose root is ``root``.

    Follows RFC 9162 §2.1.3.2, after checking that every hash is 32 bytes and the proof has exactly the length
    that ``index`` and ``size`` imply. Raises :class:`InclusionProofError` on any failure.
    """
    err = InclusionProofError
    _require_proof_index(index, "index", err)
    _require_proof_index(size, "size", err)
    if index >= size:
        raise err(f"index {index} is not below tree size {size}")
    _require_hash(leaf_hash, "leaf hash", err)
    _require_hash(root, "root", err)
    _require_proof(proof, err)
    if len(proof) != _inclusion_proof_length(index, size):
        raise err(f"inclusion proof has {len(proof)} hashes; index {index} in size {size} needs "
                  f"{_inclusion_proof_length(index, size)}")
    _, r = _walk(index, size - 1, leaf_hash, proof, "inclusion", err)
    if r != root:
        raise err("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``size1`` leaves with root ``root1`` is a prefix of the tree of ``size2`` with ``root2``.

    Follows RFC 9162 §2.1.4.2, after checking that every hash is 32 bytes and the proof has exactly the length
    that the sizes imply. Equal sizes need an empty proof and equal roots (of any length). ``size1 == 0`` is
    refused: a consistency proof from the empty tree proves nothing (the transparency-dev/merkle convention).
    Raises :class:`ConsistencyProofError` on any failure.
    """
    err = ConsistencyProofError
    _require_proof_index(size1, "size1", err)
    _require_proof_index(size2, "size2", err)
    _require_proof(proof, err)
    if size1 > size2:
        raise err(f"size1 {size1} is above size2 {size2}: a log never shrinks")
    if size1 == 0:
        raise err("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        # As transparency-dev/merkle (whose vectors we pass): equal sizes compare the roots and nothing
        # else, so the 32-byte rule below does not apply; signed checkpoints carry 32-byte roots anyway.
        if proof:
            raise err("trees of equal size need an empty consistency proof")
        if root1 != root2:
            raise err("trees of equal size have different roots")
        return
    _require_hash(root1, "root1", err)
    _require_hash(root2, "root2", err)
    want = _consistency_proof_length(size1, size2)
    if len(proof) != want:
        raise err(f"consistency proof has {len(proof)} hashes; sizes {size1} and {size2} need {want}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is a perfect subtree of the new: its root seeds the walk
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr, sr = _walk(fn, sn, path[0], path[1:], "consistency", err)
    if fr != root1:
        raise err("consistency proof does not lead to the first root")
    if sr != root2:
        raise err("consistency proof does not lead to the second root")


def _walk(fn: int, sn: int, seed: bytes, proof: Sequence[bytes], what: str,
          err: type[MerkleProofError]) -> tuple[bytes, bytes]:
    """The walk both RFC 9162 verifications share (§2.1.3.2 and §2.1.4.2): from the node at index ``fn`` of a
    tree whose last index is ``sn``, hashing ``seed`` with each proof hash up to the root.

    Returns ``(fr, sr)``: ``sr`` the root of the whole tree, ``fr`` the root of the tree whose last leaf is
    under the start, from the left siblings only (consistency compares it with the old root; inclusion needs
    only ``sr``). Raises ``err`` when the proof is longer or shorter than the tree is deep."""
    fr = sr = seed
    for c in proof:
        if sn == 0:
            raise err(f"{what} proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise err(f"{what} proof is shorter than the tree is deep")
    return fr, sr


# -- the right edge of an append-only tree ---------------------------------------------------------------


class Frontier:
    """The compact range of an append-only log: the perfect subtrees along the tree's right edge.

    One perfect subtree per set bit of ``size``, largest (leftmost) first, so O(log n) memory. :meth:`append`
    returns the perfect nodes the new leaf completes, which the store persists under ``(level, index)``; every
    perfect node of the log is returned exactly once, by the append that completes it (about two per entry).
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return the new perfect nodes ``(level, index, hash)``, the leaf (level 0) first.

        Raises ``ValueError`` if ``leaf_hash`` is not 32 bytes.
        """
        _require_hash(leaf_hash, "leaf hash", ValueError)
        self._size += 1
        n = self._size
        created = [(0, n - 1, leaf_hash)]
        level, h = 0, leaf_hash
        while self._nodes and self._nodes[-1][0] == level:
            left = self._nodes.pop()[1]
            level, h = level + 1, node_hash(left, h)
            created.append((level, (n >> level) - 1, h))
        self._nodes.append((level, h))
        return created

    def root(self) -> bytes:
        """The root of the tree of all leaves appended so far (the empty-tree root when there are none)."""
        if not self._nodes:
            return EMPTY_ROOT
        acc = self._nodes[-1][1]
        for _, h in reversed(self._nodes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def to_list(self) -> list[tuple[int, bytes]]:
        """The right edge as ``(level, hash)`` pairs, largest subtree first, for persisting."""
        return list(self._nodes)

    @classmethod
    def from_list(cls, nodes: Iterable[tuple[int, bytes]]) -> Frontier:
        """Rebuild from :meth:`to_list` output; the size is the sum of ``2**level``.

        Raises ``ValueError`` unless levels are non-negative and strictly decreasing and hashes are 32 bytes.
        """
        frontier = cls()
        previous: int | None = None
        for level, h in nodes:
            _require_index(level, "level")
            if previous is not None and level >= previous:
                raise ValueError("frontier levels must be strictly decreasing")
            _require_hash(h, "frontier hash", ValueError)
            frontier._nodes.append((level, h))
            frontier._size += 1 << level
            previous = level
        return frontier

    @classmethod
    def restore(cls, size: int, get_node: NodeGetter) -> Frontier:
        """Rebuild the frontier of a log of ``size`` leaves from its stored perfect nodes: one read per set bit."""
        _require_index(size, "size")
        frontier = cls()
        offset = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                frontier._nodes.append((level, _read(get_node, level, offset >> level)))
                offset += 1 << level
        frontier._size = size
        return frontier

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def node_reads(build: Callable[[NodeGetter], object]) -> list[tuple[int, int]]:
    """The (level, index) nodes ``build`` reads, found by a dry run: which nodes a proof needs depends
    only on the sizes and indices, never on hash values, so a store can fetch them all in one query."""
    reads: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        reads.append((level, index))
        return EMPTY_ROOT  # any 32 bytes

    build(record)
    return reads


# -- helpers ----------------------------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): where MTH splits ``n`` leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_proof_length(index: int, size: int) -> int:
    # Below the level where the paths to `index` and `size - 1` meet, every level contributes a sibling; above
    # it, only the levels where `index` is a right child do (its left neighbour on the right border).
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(size1: int, size2: int) -> int:
    # The suffix of the inclusion proof of leaf size1 - 1 above the level of the largest perfect subtree ending
    # at size1, plus that subtree's root unless it is the whole old tree (then the verifier has it as root1).
    shift = (size1 & -size1).bit_length() - 1
    seed = 0 if size1 == 1 << shift else 1
    return seed + _inclusion_proof_length(size1 - 1, size2) - shift


def _read(get_node: NodeGetter, level: int, index: int) -> bytes:
    h = get_node(level, index)
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise ValueError(f"get_node({level}, {index}) did not return a {HASH_SIZE}-byte hash")
    return h


def _require_index(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def _require_proof_index(value: int, name: str, err: type[MerkleProofError]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise err(f"{name} must be a non-negative integer, not {value!r}")


def _require_hash(value: bytes, name: str, err: type[Exception]) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise err(f"{name} must be {HASH_SIZE} bytes, got {size}")


def _require_proof(proof: Sequence[bytes], err: type[MerkleProofError]) -> None:
    if isinstance(proof, bytes | str) or not isinstance(proof, Sequence):
        raise err("proof must be a sequence of hashes")
    for i, h in enumerate(proof):
        _require_hash(h, f"proof hash {i}", err)
