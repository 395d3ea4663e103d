"""Near-duplicate images: groups for leakage-free splits, and groups whose labels disagree.

    firmware-py models dedup --data ../shared/data [--out out/dedup] [--borderline 24]

Method (TensorFlow-free, Pillow + NumPy). Each image is median-filtered (5 x 5 at the stored
256 px: removes caliper crosses, dotted lines and thin text, which are 1-3 px wide), box-averaged
to 64 x 64, and high-passed (minus a Gaussian blur, sigma 6 px = a quarter of the 64 px grid), so
the descriptor is the tissue texture and the lesion outline, not the depth-dependent brightness
ramp that all B-mode images share. Two images are near-duplicates when the normalised correlation
(NCC) of their descriptors is >= NCC_SAME, or >= NCC_NEAR and their 63-bit DCT perceptual hashes
(pHash of the 32 x 32 median-filtered image) differ in <= PHASH_NEAR bits. Groups are the
connected components of that relation.

The thresholds were set by eye on montages of the borderline pairs (`--borderline`): every BUSI
pair with NCC >= 0.55 is the same frame with and without calipers or text, or an adjacent frame
of the same lesion; between 0.45 and 0.55 the same holds for the pairs whose pHash is close,
while the pairs with distant pHash are different lesions that share a black border band or
sector corners. Below 0.45 both kinds mix, and the relation stops.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import data as D

NCC_SAME = 0.55
NCC_NEAR = 0.45
PHASH_NEAR = 16
_GRID, _SIGMA, _MEDIAN, _HASH = 64, 6.0, 5, 32


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """Row-normalised Gaussian blur along one axis (edges renormalised, no wrap-around)."""
    x = np.arange(n, dtype=np.float64)
    w = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))


def descriptors(images: list) -> tuple:
    """(texture descriptors (N, 64*64) with zero mean and unit norm, pHash bits (N, 63) bool)."""
    from PIL import Image, ImageFilter

    blur, dct = _blur_matrix(_GRID, _SIGMA), _dct_matrix(_HASH)
    feats, hashes = [], []
    for im in images:
        clean = Image.fromarray(np.asarray(im, np.uint8)).filter(ImageFilter.MedianFilter(_MEDIAN))
        a = np.asarray(clean.resize((_GRID, _GRID), Image.BOX), np.float64)
        v = (a - blur @ a @ blur.T).ravel()
        v -= v.mean()
        feats.append(v / max(np.linalg.norm(v), 1e-9))
        low = (dct @ np.asarray(clean.resize((_HASH, _HASH), Image.BOX), np.float64) @ dct.T)[:8, :8].ravel()[1:]
        hashes.append(low > np.median(low))
    return np.stack(feats), np.stack(hashes)


def similarity(images: list) -> tuple:
    """(NCC matrix, pHash Hamming distance matrix), both (N, N)."""
    f, h = descriptors(images)
    hi = h.astype(np.int32)
    return f @ f.T, hi @ (1 - hi).T + (1 - hi) @ hi.T


def is_duplicate(ncc: np.ndarray, hamming: np.ndarray) -> np.ndarray:
    """The near-duplicate relation (bool, same shape) from the two similarity measures."""
    return (ncc >= NCC_SAME) | ((ncc >= NCC_NEAR) & (hamming <= PHASH_NEAR))


def components(n: int, edges) -> np.ndarray:
    """Connected-component id per item (union-find over (i, j) edges); ids are the smallest member."""
    parent = np.arange(n)

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(n)])


def _groups(ids: np.ndarray) -> list:
    """Lists of member indices of every component with more than one member, by first member."""
    out = {}
    for i, g in enumerate(ids):
        out.setdefault(int(g), []).append(i)
    return [m for _, m in sorted(out.items()) if len(m) > 1]


def duplicate_pairs(ncc: np.ndarray, ham: np.ndarray) -> list:
    """(i, j, ncc, hamming) for every near-duplicate pair i < j."""
    i, j = np.nonzero(np.triu(is_duplicate(ncc, ham), 1))
    return [(int(a), int(b), float(ncc[a, b]), int(ham[a, b])) for a, b in zip(i, j)]


def busi_groups(items: D.ClassificationSet, pairs: list) -> dict:
    """Duplicate groups and the label-conflict groups among them (names, labels)."""
    ids = components(len(items.images), [(a, b) for a, b, _, _ in pairs])
    groups = _groups(ids)
    conflicts = [g for g in groups if len({int(items.labels[i]) for i in g}) > 1]
    return {"ids": ids, "groups": groups, "conflicts": conflicts}


def ddti_groups(items: D.SegmentationSet, pairs: list) -> dict:
    """Patients joined by near-duplicates across patients (the split unit), plus those links."""
    n = len(items.images)
    first = {}
    edges = [(first.setdefault(p, i), i) for i, p in enumerate(items.patients)]
    cross = [(a, b) for a, b, _, _ in pairs if items.patients[a] != items.patients[b]]
    ids = components(n, edges + [(a, b) for a, b, _, _ in pairs])
    dup_ids = components(n, [(a, b) for a, b, _, _ in pairs])
    cross_groups = [g for g in _groups(dup_ids) if len({items.patients[i] for i in g}) > 1]
    return {"ids": ids, "groups": _groups(ids), "cross_patient": cross_groups, "cross_pairs": cross,
            "conflicts": []}


def find(kind: str, items) -> dict:
    """Group ids (one per item), groups, and conflict groups for a loaded BUSI or DDTI set."""
    ncc, ham = similarity(items.images)
    pairs = duplicate_pairs(ncc, ham)
    res = busi_groups(items, pairs) if kind == "busi" else ddti_groups(items, pairs)
    res.update(pairs=pairs, ncc=ncc, hamming=ham)
    return res


def montage(images: list, captions: list, path: str, tile: int = 192, cols: int = 4):
    """Images side by side with a caption above each; written as a PNG."""
    from PIL import Image, ImageDraw

    rows = (len(images) + cols - 1) // cols
    cols = min(cols, len(images))
    canvas = Image.new("L", (cols * (tile + 4), rows * (tile + 16)), 32)
    draw = ImageDraw.Draw(canvas)
    for k, (im, cap) in enumerate(zip(images, captions)):
        r, c = divmod(k, cols)
        x, y = c * (tile + 4), r * (tile + 16)
        canvas.paste(Image.fromarray(np.asarray(im, np.uint8)).resize((tile, tile)), (x, y + 16))
        draw.text((x + 2, y + 2), cap, fill=255)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)


def _report(kind: str, items, res: dict) -> dict:
    names = items.names
    label = (lambda i: items.classes[int(items.labels[i])]) if kind == "busi" else (lambda i: items.patients[i])
    members = sum(len(g) for g in res["groups"])
    out = {"kind": kind, "n": len(names), "method": __doc__.split("Method")[1].split("\n\n")[0].strip(),
           "thresholds": {"ncc_same": NCC_SAME, "ncc_near": NCC_NEAR, "phash_near_bits": PHASH_NEAR},
           "n_pairs": len(res["pairs"]), "n_groups": len(res["groups"]), "n_in_groups": members,
           "n_distinct": len(names) - members + len(res["groups"]),
           "groups": [[{"image": names[i], "label": label(i)} for i in g] for g in res["groups"]],
           "conflicts": [[{"image": names[i], "label": label(i)} for i in g] for g in res["conflicts"]]}
    if kind == "ddti":
        dup_members = {i for g in res["cross_patient"] for i in g}
        out["cross_patient"] = [[{"image": names[i], "patient": items.patients[i]} for i in g]
                                for g in res["cross_patient"]]
        out["n_cross_patient_images"] = len(dup_members)
        out["n_patients"] = len(set(items.patients))
    return out


def borderline_pairs(res: dict, k: int) -> list:
    """Where the thresholds decide: the k duplicate pairs with the lowest NCC, then the k
    non-duplicate pairs with the highest NCC, as (i, j, ncc, hamming)."""
    ncc, ham = res["ncc"], res["hamming"]
    kept = sorted(res["pairs"], key=lambda p: p[2])[:k]
    i, j = np.nonzero(np.triu(~is_duplicate(ncc, ham), 1))
    top = np.argsort(-ncc[i, j])[:k]
    return kept + [(int(i[t]), int(j[t]), float(ncc[i[t], j[t]]), int(ham[i[t], j[t]])) for t in top]


def run(data: str, out_dir: str, borderline: int = 0) -> dict:
    """Dedup every dataset folder found under `data`; JSON + conflict montages into `out_dir`."""
    summary = {}
    for kind in ("busi", "ddti"):
        d = D.resolve(data, kind)
        if d is None:
            continue
        items = D.load_busi(d) if kind == "busi" else D.load_ddti(d)
        res = find(kind, items)
        rep = _report(kind, items, res)
        sets = [("conflict", res["conflicts"]), ("cross_patient", res.get("cross_patient", []))]
        for what, groups in sets:
            for k, g in enumerate(groups):
                caps = [f"{items.names[i]} " + (items.classes[int(items.labels[i])] if kind == "busi"
                                                 else f"patient {items.patients[i]}") for i in g]
                montage([items.images[i] for i in g], caps, os.path.join(out_dir, f"{kind}_{what}_{k}.png"))
        if borderline:
            pairs = borderline_pairs(res, borderline)
            ims, caps = [], []
            for a, b, ncc, ham in pairs:
                ims += [items.images[a], items.images[b]]
                caps += [f"{ncc:.3f} h{ham} {items.names[a]}", items.names[b]]
            montage(ims, caps, os.path.join(out_dir, f"{kind}_borderline.png"), tile=160, cols=6)
        with open(os.path.join(out_dir, f"{kind}_dedup.json"), "w", encoding="utf-8") as fh:
            json.dump(rep, fh, indent=1)
        summary[kind] = {k: rep[k] for k in rep if k.startswith("n")}
        summary[kind]["n_conflicts"] = len(rep["conflicts"])
    if not summary:
        raise FileNotFoundError(f"{data}: no busi/ or ddti/ labels.csv here; pass --data pointing at "
                                "../shared/data or at one dataset folder")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="firmware-py models dedup",
                                 description="near-duplicate and label-conflict groups of BUSI / DDTI")
    ap.add_argument("--data", required=True, help="../shared/data (busi/, ddti/) or one dataset folder")
    ap.add_argument("--out", default="out/dedup", help="folder for <kind>_dedup.json and the montages "
                    "(keep it out of the repository: montages show the data)")
    ap.add_argument("--borderline", type=int, default=0,
                    help="also write a montage of the N duplicate pairs nearest the thresholds")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    try:
        summary = run(args.data, args.out, args.borderline)
    except (FileNotFoundError, ValueError) as exc:
        print(f"models dedup: {exc}", file=sys.stderr)
        return 2
    for kind, s in summary.items():
        print(kind, " ".join(f"{k}={v}" for k, v in s.items()))
    print(f"wrote {args.out}")
    return 0
