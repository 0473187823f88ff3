"""The left-hand tree: the user's workspace first, then the shared folders
they may see, nested, siblings by name. Built from one list query."""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.models import Folder
from portal.permissions import visible_folders


@dataclass
class TreeNode:
    folder: Folder
    children: list[TreeNode] = field(default_factory=list)


def folder_tree(user) -> list[TreeNode]:
    columns = ("pk", "name", "kind", "parent_id", "path", "owner_id")
    folders = list(visible_folders(user).only(*columns))
    nodes = {folder.pk: TreeNode(folder) for folder in folders}
    roots: list[TreeNode] = []
    for node in nodes.values():
        parent = nodes.get(node.folder.parent_id)
        (parent.children if parent else roots).append(node)
    for node in nodes.values():
        node.children.sort(key=lambda child: child.folder.name.casefold())
    roots.sort(key=lambda node: (not node.folder.is_personal, node.folder.name.casefold()))
    return roots


def folder_name_paths(folders: list[Folder], separator: str = " / ") -> dict[int, str]:
    """Folder names from the top for each folder ("Finance / Payables"),
    reading every ancestor in one query."""
    ids = {pk for folder in folders for pk in folder.ancestor_ids}
    names = dict(Folder.objects.filter(pk__in=ids).values_list("pk", "name"))
    return {
        folder.pk: separator.join(names.get(pk, "…") for pk in folder.ancestor_ids)
        for folder in folders
    }
