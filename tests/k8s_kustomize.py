"""A Python render of the part of kustomize that deploy/k8s uses (for machines without kubectl).

Implemented, with kustomize's semantics and order (patches, then namespace, then images):

- ``resources``: YAML files (one or more documents) and folders holding a kustomization;
- ``patches``: JSON 6902 patches (``add``, ``replace``, ``remove``), inline (``patch``) or in
  a file (``path``), applied to every object their ``target`` selects; the target's ``kind``
  and ``name`` are regular expressions matched whole, as kustomize matches them;
- ``namespace``: set on every object (all of ours are namespaced);
- ``images``: ``newName``, ``newTag`` and ``digest`` for every container and init container
  whose image has that ``name``.

Anything else is refused (``Unsupported``) rather than ignored: a kustomization field, a
patch that is not a JSON 6902 list (a strategic merge patch), an operation, a target field,
a patch that selects nothing, an object kustomize would refuse twice. A new kustomize
feature in the manifests makes this render fail until it is implemented here, so it never
renders something other than what ``kubectl kustomize`` would. tests/test_k8s.py compares
the two wherever kubectl (or kustomize) is installed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
PATCH_FIELDS = {"target", "patch", "path"}
TARGET_FIELDS = {"kind", "name"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class Unsupported(Exception):
    """The kustomization uses something this render does not implement."""


def render(directory: Path) -> list[Object]:
    """The objects ``kubectl kustomize <directory>`` prints, in file order."""
    kustomization = _read_kustomization(directory)
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        found = render(path) if path.is_dir() else _read_objects(path)
        for obj in found:
            if any(_id(obj) == _id(other) for other in objects):
                raise Unsupported(f"{path}: {_id(obj)} is already a resource")
            objects.append(obj)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch, directory)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] in CLUSTER_SCOPED:
                raise Unsupported(f"{_id(obj)} is cluster-scoped")
            obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


def _read_kustomization(directory: Path) -> Object:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise Unsupported(f"{directory}: no kustomization.yaml")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise Unsupported(f"{path}: not a mapping")
    unknown = set(data) - FIELDS
    if unknown:
        raise Unsupported(f"{path}: {sorted(unknown)} not implemented")
    if data.get("kind", "Kustomization") != "Kustomization":
        raise Unsupported(f"{path}: kind {data['kind']}")
    return data


def _read_objects(path: Path) -> list[Object]:
    objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for obj in objects:
        if not isinstance(obj, dict) or not {"apiVersion", "kind", "metadata"} <= set(obj):
            raise Unsupported(f"{path}: a document is not a Kubernetes object")
    return objects


def _id(obj: Object) -> tuple[str, str, str]:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


# ------------------------------------------------------------------ patches (JSON 6902)
def _apply_patch(objects: list[Object], patch: Object, directory: Path) -> None:
    if (
        set(patch) - PATCH_FIELDS
        or "target" not in patch
        or ("patch" in patch) == ("path" in patch)
    ):
        raise Unsupported(f"patch {patch}: needs a target and one of patch or path")
    target = patch["target"]
    if set(target) - TARGET_FIELDS:
        raise Unsupported(f"patch target {target}: only kind and name are implemented")
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise Unsupported(f"patch for {target}: not a JSON 6902 list (strategic merge?)")
    selected = [obj for obj in objects if _selected(obj, target)]
    if not selected:
        raise Unsupported(f"patch target {target} selects no object")
    for obj in selected:
        for operation in operations:
            _apply_operation(obj, operation)


def _selected(obj: Object, target: Object) -> bool:
    for field, value in (("kind", obj["kind"]), ("name", obj["metadata"]["name"])):
        if field in target and re.fullmatch(target[field], value) is None:
            return False
    return True


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise Unsupported(f"JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _apply_operation(obj: Object, operation: Object) -> None:
    op = operation.get("op")
    if op not in ("add", "replace", "remove"):
        raise Unsupported(f"JSON patch operation {op!r}")
    *parents, last = _pointer(operation["path"])
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        if op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
            return
        index = int(last)
        if not 0 <= index < len(node):
            raise KeyError(f"{operation['path']}: no such item")
        if op == "replace":
            node[index] = value
        else:
            del node[index]
        return
    if op != "add" and last not in node:
        raise KeyError(f"{operation['path']}: nothing to {op}")
    if op == "remove":
        del node[last]
    else:
        node[last] = value


# ------------------------------------------------------------------ images
def _split_image(image: str) -> tuple[str, str]:
    """``name`` and what follows it (``:tag``, ``@digest`` or nothing)."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _set_image(objects: list[Object], image: Object) -> None:
    if set(image) - IMAGE_FIELDS or "name" not in image:
        raise Unsupported(f"images entry {image}")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        _retag(container, image)
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    for obj in objects:
        visit(obj)


def _retag(container: Object, image: Object) -> None:
    name, rest = _split_image(container.get("image", ""))
    if name != image["name"]:
        return
    if "digest" in image:
        rest = "@" + image["digest"]
    elif "newTag" in image:
        rest = ":" + str(image["newTag"])
    container["image"] = image.get("newName", name) + rest
