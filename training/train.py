#!/usr/bin/python3
"""Train methanemap's classifier on a dataset in METER-ML's layout and
export it as ONNX with a complete model card.

The dataset is a folder with one sub-folder per location (naip.png RGBA with
NIR in alpha, sentinel-2-10m.npy, sentinel-2-20m.npy, sentinel-2-60m.npy,
sentinel-1.npy) and a GeoJSON of locations whose properties give the folder
(Image_Folder) and labels (Type: METER-ML names, or classes: methanemap ids;
"Negative" or an empty list for none). `methanemap fixtures --dataset N`
writes one; METER-ML's own release has the same layout.

Chips are built exactly as the model card describes them: every band is
brought to the card's grid (NAIP averaged down, coarser Sentinel-2 bands
enlarged bilinearly), then v -> ((v*scale + offset) - mean) / std.

A card's Sentinel-2 offsets are for DNs as ESA distributes them from
processing baseline 04.00 on (reflectance x 10,000 + 1000), which is what
`methanemap fixtures --dataset` writes. --s2-boa-add-offset says what the
dataset's DNs need added for reflectance x 10,000 instead: 0 for arrays
without the +1000 (METER-ML's own, exported before that baseline as far as
we know). The reflectance bands' offsets are then fitted as methanemap's
chip cutter fits them to a scene.

Usage:
  train.py --data DIR --card models/demo/model.yaml --out DIR [--epochs N]
           [--arch small|densenet121] [--seed N] [--val-fraction F]
           [--s2-boa-add-offset -1000|0]

Writes OUT/model.onnx, OUT/model.yaml (the card completed with the ONNX
file, its sha256, output, classes and thresholds) and OUT/reference.json
(outputs for generated inputs, so other implementations can check they
reproduce the model).
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from PIL import Image

CLASSES = ["cafo", "coal_mine", "landfill", "natural_gas_processing_plant",
           "oil_refinery_petroleum_terminal", "wastewater_treatment_plant"]
METER_ML = {"CAFOs": "cafo", "Mines": "coal_mine", "Landfills": "landfill",
            "ProcessingPlants": "natural_gas_processing_plant",
            "RefineriesAndTerminals": "oil_refinery_petroleum_terminal",
            "WWTreatment": "wastewater_treatment_plant"}
# where each band sits in METER-ML's arrays: (file, channel, native size)
SOURCES = {("naip", "red"): ("naip.png", 0), ("naip", "green"): ("naip.png", 1),
           ("naip", "blue"): ("naip.png", 2), ("naip", "nir"): ("naip.png", 3),
           ("s1", "VV"): ("sentinel-1.npy", 0), ("s1", "VH"): ("sentinel-1.npy", 1)}
for i, b in enumerate(["B04", "B03", "B02", "B08"]):
    SOURCES[("s2", b)] = ("sentinel-2-10m.npy", i)
for i, b in enumerate(["B05", "B06", "B07", "B8A", "B11", "B12"]):
    SOURCES[("s2", b)] = ("sentinel-2-20m.npy", i)
for i, b in enumerate(["B01", "B09", "B10"]):
    SOURCES[("s2", b)] = ("sentinel-2-60m.npy", i)


def load_array(folder, name):
    path = os.path.join(folder, name)
    if name.endswith(".png"):
        return np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32)
    return np.load(path).astype(np.float32)


def resample(plane, size):
    """Bring an (h, w) plane to (size, size): average when shrinking by an
    integer factor, bilinear when enlarging."""
    h = plane.shape[0]
    t = torch.from_numpy(plane)[None, None]
    if h == size:
        out = t
    elif h > size:
        out = F.avg_pool2d(t, h // size)
    else:
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


# BOA_ADD_OFFSET of the DNs a card's Sentinel-2 offsets are written for
CARD_BOA = -1000


def build_input(folder, inp, s2_boa=CARD_BOA):
    """One card input of one location: (bands, size, size), normalised.
    s2_boa is what the location's Sentinel-2 DNs need added for reflectance
    x 10,000 (-1000 with baseline 04.00's +1000, 0 without it)."""
    cache = {}
    planes = []
    for b in inp["bands"]:
        fname, ch = SOURCES[(b["sensor"], b["band"])]
        if fname not in cache:
            arr = load_array(folder, fname)
            # nodata: Sentinel-2 DN 0, and pixels where every band is 0 (what
            # the arrays hold where a sensor had no data)
            cache[fname] = (arr, np.all(arr == 0, axis=-1))
        arr, empty = cache[fname]
        plane = arr[..., ch].copy()
        nodata = empty | (plane == 0) if b["sensor"] == "s2" else empty
        raw = resample(np.where(nodata, 0, plane).astype(np.float32), inp["size"])
        valid = resample((~nodata).astype(np.float32), inp["size"])
        offset = b["offset"]
        if b["sensor"] == "s2" and b["band"] != "SCL":
            offset += (s2_boa - CARD_BOA) * b["scale"]
        v = ((raw * b["scale"] + offset) - b["mean"]) / b["std"]
        v[valid < 0.999] = b["fill"]  # any nodata under the kernel
        planes.append(v)
    return np.stack(planes).astype(np.float32)


def labels_of(props):
    names = props.get("classes") or props.get("Type") or []
    if isinstance(names, str):
        names = [names]
    y = np.zeros(len(CLASSES), dtype=np.float32)
    for n in names:
        c = METER_ML.get(n, n)
        if c in CLASSES:
            y[CLASSES.index(c)] = 1
    return y


class SmallNet(nn.Module):
    """Conv-BN-ReLU blocks, global average pooling, one linear layer: only
    operators both ONNX Runtime and onnx-go run (no Pad, no AveragePool)."""

    def __init__(self, cin, ncls):
        super().__init__()

        def block(i, o, pool=True):
            layers = [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return layers

        self.features = nn.Sequential(*block(cin, 32), *block(32, 48), *block(48, 64), *block(64, 96, False))
        self.pool = nn.AdaptiveAvgPool2d(1)  # exported as GlobalAveragePool
        self.fc = nn.Linear(96, ncls)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def densenet121(cin, ncls):
    import torchvision
    m = torchvision.models.densenet121(weights=None, num_classes=ncls)
    m.features.conv0 = nn.Conv2d(cin, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


def auprc(y, s):
    order = np.argsort(-s)
    y = y[order]
    tp = np.cumsum(y)
    if tp[-1] == 0:
        return float("nan")
    precision = tp / np.arange(1, len(y) + 1)
    return float(np.sum(precision * y) / tp[-1])


def calibrate(y, s):
    """The threshold with the best F1 on validation, halfway between the
    lowest positive score kept and the next score below; at least 0.5 (the
    default) and at most 0.95."""
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    order = np.argsort(-s)
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1 = 2 * tp / (k + ys.sum())
    best = int(np.argmax(f1))
    below = ss[best + 1] if best + 1 < len(ss) else 0.0
    return float(min(0.95, max(0.5, (ss[best] + below) / 2)))


def reference_input(n, c, size):
    """Inputs any implementation can regenerate: sin of the indices."""
    i = np.arange(n * c * size * size, dtype=np.float64).reshape(n, c, size, size)
    return np.sin(i * 0.001).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--card", required=True, help="model card template: chip and band sections")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--arch", choices=["small", "densenet121"], default="small")
    ap.add_argument("--size", type=int, help="override the card's input size (densenet121: 720)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--random-weights", action="store_true", help="export without training (benchmarks)")
    ap.add_argument("--fixed-batch", type=int, default=0, help="export with a fixed batch size instead of a dynamic one")
    ap.add_argument("--s2-boa-add-offset", type=float, default=CARD_BOA,
                    help="what the dataset's Sentinel-2 DNs need added for reflectance x 10,000: -1000 (baseline 04.00 on, "
                         "our fixtures), 0 (DNs without the +1000)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    with open(args.card) as f:
        template = f.read()
    card = yaml.safe_load(template)
    # the template's comments, without the line a previous run added
    # (a card trained again from itself would pile them up)
    header = [l for l in template.splitlines() if l.startswith("#") and not l.startswith("# Written by training/train.py")]
    while header and header[-1] == "#":
        header.pop()
    inputs = card["chip"]["inputs"]
    if len(inputs) != 1:
        sys.exit("train.py: cards with one stacked input are supported")
    inp = dict(inputs[0])
    if args.size:
        inp["size"] = args.size
        card["chip"]["inputs"][0]["size"] = args.size
    cin = len(inp["bands"])
    model = SmallNet(cin, len(CLASSES)) if args.arch == "small" else densenet121(cin, len(CLASSES))

    metrics = {}
    thresholds = {c: 0.5 for c in CLASSES}
    if not args.random_weights:
        with open(os.path.join(args.data, "dataset.geojson")) as f:
            feats = json.load(f)["features"]
        xs, ys = [], []
        for ft in feats:
            folder = os.path.join(args.data, ft["properties"]["Image_Folder"])
            xs.append(build_input(folder, inp, args.s2_boa_add_offset))
            ys.append(labels_of(ft["properties"]))
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys))
        idx = list(range(len(xs)))
        random.shuffle(idx)
        nval = int(len(idx) * args.val_fraction) if len(idx) >= 10 else 0
        val, tr = idx[:nval], idx[nval:]
        print(f"{len(tr)} training and {len(val)} validation locations, {cin} bands at {inp['size']} px", flush=True)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
        pos = y[tr].sum(0)
        pos_weight = torch.clamp((len(tr) - pos) / torch.clamp(pos, min=1), max=10)
        lossf = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        for epoch in range(args.epochs):
            model.train()
            random.shuffle(tr)
            total = 0.0
            for s in range(0, len(tr), args.batch):
                b = tr[s:s + args.batch]
                xb = x[b]
                if random.random() < 0.5:  # flips and right-angle turns: facilities have no up
                    xb = torch.flip(xb, dims=[3])
                xb = torch.rot90(xb, k=random.randint(0, 3), dims=(2, 3))
                opt.zero_grad()
                loss = lossf(model(xb), y[b])
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            print(f"epoch {epoch + 1}/{args.epochs} loss {total / max(1, len(tr)):.4f}", flush=True)
        model.eval()
        if val:
            with torch.no_grad():
                s = torch.sigmoid(model(x[val])).numpy()
            for i, c in enumerate(CLASSES):
                a = auprc(y[val][:, i].numpy(), s[:, i])
                metrics[c] = None if math.isnan(a) else round(a, 4)  # None: no positive in validation
                thresholds[c] = round(calibrate(y[val][:, i].numpy(), s[:, i]), 3)
            print("validation AUPRC:", json.dumps(metrics), flush=True)
            print("thresholds (best F1 on validation):", json.dumps(thresholds), flush=True)
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    name = inp["name"]
    dummy = torch.zeros(args.fixed_batch or 2, cin, inp["size"], inp["size"])
    dynamic = None if args.fixed_batch else {name: {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(model, dummy, onnx_path, input_names=[name], output_names=["logits"],
                      dynamic_axes=dynamic, opset_version=13, do_constant_folding=True)
    with open(onnx_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()

    card["onnx"] = "model.onnx"
    card["sha256"] = sha
    card["output"] = {"name": "logits", "sigmoid": True}
    card["classes"] = CLASSES
    card["thresholds"] = thresholds
    with open(os.path.join(args.out, "model.yaml"), "w") as f:
        for line in header:
            f.write(line + "\n")
        f.write("#\n# Written by training/train.py (--arch %s, %d epochs, seed %d) from that template.\n" % (args.arch, args.epochs, args.seed))
        yaml.safe_dump(card, f, sort_keys=False, default_flow_style=None, width=120)

    ref_n = args.fixed_batch or 3
    rx = reference_input(ref_n, cin, inp["size"])
    with torch.no_grad():
        ry = model(torch.from_numpy(rx)).numpy()
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"input": "x[i] = sin(0.001 * i) over the flattened (n, c, h, w) tensor, float32",
                   "shape": [ref_n, cin, inp["size"], inp["size"]],
                   "output": "logits", "logits": ry.tolist(), "validation_auprc": metrics}, f, indent=1)
    print(f"wrote {onnx_path} (sha256 {sha}), model.yaml and reference.json", flush=True)


if __name__ == "__main__":
    main()
