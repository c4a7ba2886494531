#!/usr/bin/env python3
"""make-index.py LAYOUT NEWTAG TAG:OS/ARCH...: writes an OCI image index that
lists the manifests of the given tags with their platforms, and tags it.
(umoci builds single-platform images only; skopeo pushes the index with --all.)"""
import hashlib
import json
import os
import sys

layout, new_tag, entries = sys.argv[1], sys.argv[2], sys.argv[3:]
index_path = os.path.join(layout, "index.json")
with open(index_path) as f:
    index = json.load(f)
by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}

manifests = []
for entry in entries:
    tag, platform = entry.split(":", 1)
    os_name, arch = platform.split("/")
    desc = dict(by_tag[tag])
    desc.pop("annotations", None)
    desc["platform"] = {"os": os_name, "architecture": arch}
    manifests.append(desc)

blob = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": manifests,
}).encode()
digest = hashlib.sha256(blob).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(blob)
index["manifests"].append({
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "digest": "sha256:" + digest,
    "size": len(blob),
    "annotations": {"org.opencontainers.image.ref.name": new_tag},
})
with open(index_path, "w") as f:
    json.dump(index, f)
