#!/usr/bin/env python3
"""Writes the KWS held-out test splits as int8 model inputs, for CI's accuracy check.

CI cannot synthesize and featurize the speech without the burn workspace, so the test splits of
the feature table (`ember-models kws-data`) are committed in the form the model consumes: each
example's 49x10 MFCCs quantized onto the model's input grid exactly as `ember-models export`
does (the MLPerf front end truncates toward zero, in f32). tests/models runs the committed
kws.emb on them and requires the accuracy stated in kws/results.md.

    python3 data/kws_test_set.py data-cache/kws2.parquet kws/kws.emb kws/test_set.bin

File layout: b"EMBKWSTS", u32 count, then per example: u8 split (0 test_espeak, 1 test_flite),
u8 label, 490 int8 features.
"""
import json
import struct
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

SPLITS = {"test_espeak": 0, "test_flite": 1}


def input_quant(emb):
    """Scale (f32) and zero point of the model's input, read with `ember inspect --json`."""
    ember = subprocess.run(
        ["ember", "inspect", emb, "--json"], check=True, capture_output=True, text=True
    )
    quant = json.loads(ember.stdout)["inputs"][0]["quant"]
    return np.float32(quant["scale"]), np.float32(quant["zero_point"])


def main(table, emb, out):
    scale, zero_point = input_quant(emb)
    rows = pq.read_table(table).to_pylist()
    records = []
    for row in rows:
        split = SPLITS.get(row["split"])
        if split is None:
            continue
        features = np.frombuffer(row["features_f32le"], dtype="<f4")
        q = np.trunc(features / scale + zero_point)
        q = np.clip(q, -128, 127).astype(np.int8)
        records.append(struct.pack("BB", split, row["label"]) + q.tobytes())
    with open(out, "wb") as f:
        f.write(b"EMBKWSTS" + struct.pack("<I", len(records)))
        f.writelines(records)
    print(f"{out}: {len(records)} examples")


if __name__ == "__main__":
    main(*sys.argv[1:4])
