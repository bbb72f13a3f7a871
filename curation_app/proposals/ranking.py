"""Pick mode: rank an anchor's candidate partners with the same scores as the proposals.

The app calls `rank_candidates(project_dir, wnid, anchor_file, candidates)`. The class statistics
come from the class pool recorded by the last `propose` run, so the score of a pair here equals its
score in proposals.parquet. Candidates the project has never embedded are embedded now (the images
root and embedder recorded by `propose` are used unless given) and cached.

Once the class has accepts and rejects, the order also follows what they say
(`learning.py`, the same model verify mode's order uses); `learning=False` turns that off.

Left out of the ranking, because the decision store would refuse them or they were decided:
the anchor itself, near-duplicates of the anchor (same bytes, pHash, crop test), images already
in an accepted pair, pairs with the anchor that were accepted, rejected or refuted, and files
that cannot be decoded.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import EmbeddingCache, Entry
from curation_app.proposals.duplicates import CROP_SIMILARITY, crop_similarity, hash_distances
from curation_app.proposals.embedders import DEFAULT_SPEC, Embedder, load_embedder
from curation_app.proposals.learning import Evidence, LearnedModel, load_class_pool, standardised
from curation_app.proposals.scoring import class_statistics, pair_scores, standardise
from curation_app.proposals.worker import describe
from pair_manifest.errors import UserError
from pair_manifest.images import NEAR_DUPLICATE_BITS, ImageReadError, sha256_bytes
from pair_manifest.store import STORE_FILE, DecisionStore, canonical_pair, check_file_id, resolve_image


@lru_cache(maxsize=4)
def _embedder(spec: str) -> Embedder:
    # Once per process, not once per anchor; never a download from inside the app (propose fetched the weights).
    return load_embedder(spec, offline=True)


def _embed_missing(cache: EmbeddingCache, embedder: Embedder, images_root: str | None, files: list[str]) -> None:
    """Embed and cache `files`; unreadable ones are skipped (they simply stay out of the ranking)."""
    if images_root is None:
        raise UserError(f"{files[0]}: not embedded yet and no images root is known (run `semantic-pairs propose`)")
    preparer = embedder.preparer()
    described = []
    for file in files:
        path = resolve_image(images_root, file)
        data = path.read_bytes()
        try:
            facts, prepared = describe(data, file, preparer)
        except ImageReadError:
            continue
        described.append((file, os.stat(path), data, facts, prepared))
    if not described:
        return
    vectors = embedder.embed(np.stack([d[4] for d in described]))
    cache.write(embedder.cache_key, [Entry(file, stat.st_size, stat.st_mtime_ns, sha256_bytes(data), facts, vector)
                                     for (file, stat, data, facts, _), vector in zip(described, vectors)])


def rank_candidates(project_dir: str | Path, wnid: str, anchor_file: str, candidates: list[str], *,
                    images_root: str | Path | None = None, embedder: str | None = None,
                    learning: bool = True) -> list[tuple[str, float]]:
    """`(file, score)` for the usable candidates, best first (ties by file name): by score, plus
    the class's learned terms once it has decisions."""
    for file in [anchor_file, *candidates]:
        check_file_id(wnid, file)
    project = Path(project_dir)
    cache = EmbeddingCache.for_project(project)
    try:
        model = _embedder(embedder or cache.get_meta("embedder_spec") or DEFAULT_SPEC)
        recorded_weight = cache.get_meta("context_weight")  # the weight `propose` scored with
        root = str(images_root) if images_root else cache.get_meta("images_root")
        pool = cache.class_files(wnid)
        wanted = sorted(set(pool) | {anchor_file} | set(candidates))
        data, missing = cache.load(model.cache_key, wnid, wanted)
        if missing:
            _embed_missing(cache, model, root, missing)
            data, _ = cache.load(model.cache_key, wnid, wanted)
    finally:
        cache.close()
    index = {file: i for i, file in enumerate(data.files)}
    if anchor_file not in index:
        raise UserError(f"{anchor_file}: the anchor image cannot be read")
    pool_rows = [index[f] for f in pool if f in index]
    if len(pool_rows) < 2:  # no propose run for this class yet: the images at hand are the pool
        pool_rows = list(range(len(data.files)))
    stats = class_statistics(data.vectors[pool_rows], data.context[pool_rows], model.standardize)
    objects, contexts = standardise(data.vectors, data.context, stats)

    anchor = index[anchor_file]
    rows = np.array(sorted({index[f] for f in candidates if f in index} - {anchor}), dtype=np.int64)
    if len(rows) == 0:
        return []
    weight = float(recorded_weight) if recorded_weight else None
    scores = pair_scores(objects[[anchor]], contexts[[anchor]], objects[rows], contexts[rows], weight)[0]
    phash_distance = hash_distances(data.phash[[anchor, *rows]], data.phash_mirrored[[anchor, *rows]])[0, 1:]
    crop = crop_similarity(data.windows, np.full(len(rows), anchor), rows)
    same_bytes = np.array([data.sha256[r] == data.sha256[anchor] for r in rows])
    keep = (phash_distance >= NEAR_DUPLICATE_BITS) & (crop < CROP_SIMILARITY) & ~same_bytes

    evidence = Evidence()
    if (project / STORE_FILE).is_file():
        store = DecisionStore.for_project(project)
        try:
            used = store.used_images(wnid)
            decided = store.decided_pairs(wnid)
            if learning:
                evidence = Evidence.of(store.decided_pairs(wnid, "accepted"),
                                       store.decided_pairs(wnid, "rejected") | store.decided_pairs(wnid, "refuted"))
        finally:
            store.close()
        keep &= np.array([data.files[r] not in used and canonical_pair(anchor_file, data.files[r]) not in decided
                          for r in rows])
    key = scores.astype(np.float64)
    if evidence:
        pool = load_class_pool(project, wnid, model.cache_key, model.standardize)
        if pool is not None:
            files = [data.files[r] for r in rows]
            key = standardised(scores, scores) + LearnedModel(pool, evidence).adjustment([anchor_file] * len(files), files)
    ranked = [(data.files[r], float(s), float(k)) for r, s, k, kept in zip(rows, scores, key, keep) if kept]
    return [(file, score) for file, score, _ in sorted(ranked, key=lambda item: (-item[2], item[0]))]
