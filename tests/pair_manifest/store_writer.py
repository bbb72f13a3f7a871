"""A real writer process for the durability tests: records decisions and prints each key only
after `record` has returned (i.e. after the commit), which is what "acknowledged" means."""
from __future__ import annotations

import os
import random
import sys

from pair_manifest.errors import UserError
from pair_manifest.store import DecisionStore, NewDecision


def main(store_path: str, images_root: str, wnid: str, annotator: str, seed: int, count: int) -> None:
    store = DecisionStore(store_path, images_root=images_root)
    files = sorted(f"{wnid}/{name}" for name in os.listdir(f"{images_root}/{wnid}"))
    rng = random.Random(seed)
    for i in range(count):
        a, b = rng.sample(files, 2)
        verdict = rng.choice(["accept", "reject", "reject", "skip"])
        key = f"{annotator}-{i}"
        try:
            store.record(NewDecision(key, wnid, a, b, verdict, annotator))
        except UserError as error:  # a policy refusal is an answer too, but not an acknowledgement
            print(f"refused {key} {type(error).__name__}", flush=True)
            continue
        print(f"ack {key}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
