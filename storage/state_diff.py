"""What changed between two states of the trie: the keys whose values differ, with both values.

The walk descends only into subtrees whose hashes differ, so its cost follows the
number of changed keys (times the depth), not the size of the state. Node-side
indexes use it to move from the state they describe to the new best state, across
a re-org or after a restart, without the blocks' change sets.
"""

from __future__ import annotations

from typing import Iterator

from storage.trie import StateRef, StateTrie
from storage.trie_nodes import child_hash

_LEAF = 0


def diff_states(trie: StateTrie, old: StateRef, new: StateRef) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """(key, value in old or None, value in new or None) for every key whose value differs, in no set order."""
    if old.root == new.root:
        return
    yield from _diff(trie, trie.root_node_key(old), trie.root_node_key(new))


def _leaves(trie: StateTrie, node_key: bytes | None) -> Iterator[tuple[bytes, bytes]]:
    stack = [node_key] if node_key is not None else []
    while stack:
        node_key = stack.pop()
        node = trie.read_node(node_key)
        if node[0] == _LEAF:
            yield node[1], node[2]
        else:
            stack.extend(k for k in trie.children(node_key, node) if k is not None)


def _diff(trie: StateTrie, old_key: bytes | None, new_key: bytes | None) -> Iterator[tuple]:
    if old_key is None or new_key is None:
        if old_key is not None:
            yield from ((k, v, None) for k, v in _leaves(trie, old_key))
        elif new_key is not None:
            yield from ((k, None, v) for k, v in _leaves(trie, new_key))
        return
    old_node, new_node = trie.read_node(old_key), trie.read_node(new_key)
    if old_node[0] == _LEAF or new_node[0] == _LEAF:
        # one side holds a single key here: compare the (small) sets of leaves directly
        old_items = dict(_leaves(trie, old_key))
        new_items = dict(_leaves(trie, new_key))
        for key in old_items.keys() | new_items.keys():
            before, after = old_items.get(key), new_items.get(key)
            if before != after:
                yield key, before, after
        return
    old_children, new_children = trie.children(old_key, old_node), trie.children(new_key, new_node)
    for nibble in range(16):
        if child_hash(old_node, nibble) != child_hash(new_node, nibble):
            yield from _diff(trie, old_children[nibble], new_children[nibble])
