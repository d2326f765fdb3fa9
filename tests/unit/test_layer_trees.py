"""Merging layers into one /opt tree (squall/functions/layer_trees.py): order, overrides between
files, directories and symbolic links, hard links, and the start-up sweep."""

from __future__ import annotations

import os

from squall.functions.layer_trees import OptTrees, merge_trees, opt_key


def tree(root, files: dict[str, str], links: dict[str, str] | None = None):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in (links or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    return root


def test_later_layers_win_and_everything_else_is_kept(tmp_path):
    a = tree(tmp_path / "a", {"python/x.py": "a", "python/only_a.py": "a", "bin/tool": "a", "data": "file in a"},
             {"python/link.py": "x.py"})
    b = tree(tmp_path / "b", {"python/x.py": "b", "bin/tool/inner": "b dir", "data/sub": "dir in b"},
             {"python/only_a.py": "x.py"})
    dest = tmp_path / "opt"
    merge_trees([a, b], dest)
    assert (dest / "python/x.py").read_text() == "b"
    assert os.readlink(dest / "python/only_a.py") == "x.py"  # b's symlink replaced a's file
    assert os.readlink(dest / "python/link.py") == "x.py"  # a's symlink kept
    assert (dest / "bin/tool/inner").read_text() == "b dir"  # a directory over a file
    assert (dest / "data/sub").read_text() == "dir in b"
    merged_back = tmp_path / "opt2"
    merge_trees([b, a], merged_back)
    assert (merged_back / "python/x.py").read_text() == "a" and (merged_back / "bin/tool").read_text() == "a"
    assert os.stat(dest / "python/x.py").st_ino == os.stat(b / "python/x.py").st_ino  # linked, not copied


def test_a_merged_tree_outlives_its_layers_and_is_swept_when_unused(tmp_path):
    a = tree(tmp_path / "a", {"python/keep.py": "kept"})
    trees = OptTrees(tmp_path / "opt")
    path = trees.ensure(["sha-a"], [a])
    assert path == trees.path(["sha-a"]) and path.name == opt_key(["sha-a"])
    assert trees.ensure(["sha-a"], [a]) == path  # built once
    for entry in sorted(a.rglob("*"), reverse=True):
        entry.unlink() if entry.is_file() else entry.rmdir()
    assert (path / "python/keep.py").read_text() == "kept"  # hard links keep the bytes
    other = trees.ensure(["sha-a", "sha-b"], [path, path])
    assert trees.sweep({path.name}) == 1 and path.exists() and not other.exists()
