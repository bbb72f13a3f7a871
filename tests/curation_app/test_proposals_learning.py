"""Learning from decisions (`curation_app/proposals/learning.py`) on constructed data, the order
`ProposalBook` gives, and the real curation service showing the re-ranked order next."""
from __future__ import annotations

import numpy as np
import pytest

from curation_app.proposal_book import Proposal, ProposalBook
from curation_app.proposals.learning import ClassPool, Evidence, LearnedModel, learned_order
from curation_app.proposals.output import decision_source
from pair_manifest.stats import proposal_source


def two_kinds(n: int = 60, dims: int = 24, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Images of two kinds ('a' and 'b' in the name) that differ along one axis among noisy others,
    the way two sibling classes share a folder."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dims))
    vectors[: n // 2, 3] += 2.5
    vectors[n // 2:, 3] -= 2.5
    return [f"c/{'a' if i < n // 2 else 'b'}{i:03d}" for i in range(n)], vectors


def kind(file: str) -> str:
    return file.split("/")[1][0]


def test_pairs_like_the_accepted_ones_rise_and_pairs_like_the_rejected_ones_sink():
    files, vectors = two_kinds()
    pool = ClassPool(files, vectors)
    rng = np.random.default_rng(1)
    candidates = [tuple(sorted(rng.choice(files, 2, replace=False))) for _ in range(400)]
    candidates = list(dict.fromkeys(p for p in candidates if p[0] != p[1]))
    decided, remaining = candidates[:30], candidates[30:]
    evidence = Evidence.of([p for p in decided if kind(p[0]) == kind(p[1])],
                           [p for p in decided if kind(p[0]) != kind(p[1])])
    assert evidence.accepted and evidence.rejected
    scores = np.zeros(len(remaining))  # equal scores: before learning, the given (rank) order
    assert list(learned_order(None, *zip(*remaining), scores, scores)) == list(range(len(remaining)))
    order = learned_order(LearnedModel(pool, evidence), *zip(*remaining), scores, scores)
    same = np.array([kind(remaining[i][0]) == kind(remaining[i][1]) for i in order])
    top = len(order) // 4
    assert same[:top].mean() >= 0.9 and same[-top:].mean() <= 0.1  # like accepts first, like rejects last
    assert same.mean() == pytest.approx(0.5, abs=0.1)  # the candidates themselves are half and half


def test_images_whose_pairs_were_rejected_make_poor_anchors():
    """Only rejects, all with one image: its pairs and its near neighbours' pairs sink below pairs of
    equal score elsewhere; accepts around another image lift that image's pairs."""
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(80, 12))
    vectors[1] = vectors[0] + 0.01 * rng.normal(size=12)  # 1 is 0's nearest neighbour
    files = [f"c/{i:03d}" for i in range(80)]
    pool = ClassPool(files, vectors)
    rejected = [("c/000", f"c/{j:03d}") for j in (40, 50, 60)]
    model = LearnedModel(pool, Evidence.of((), rejected))
    assert model.side is None  # no accepts: nothing to split on, only the neighbourhoods speak
    remaining = [("c/001", "c/030"), ("c/020", "c/070"), ("c/000", "c/031")]
    scores = np.zeros(3)
    order = list(learned_order(model, *zip(*remaining), scores, scores))
    assert order.index(1) < order.index(0) and order.index(1) < order.index(2)
    accepted = [("c/020", f"c/{j:03d}") for j in (41, 51)]
    lifted = LearnedModel(pool, Evidence.of(accepted, rejected))
    terms = lifted.image_terms  # the neighbourhood part of the model, per image
    assert terms[20] > 0 > terms[1]  # lifted by accepts around it; sunk by the rejects of its neighbour


def test_the_order_depends_on_the_decisions_not_on_how_they_were_listed():
    files, vectors = two_kinds(seed=3)
    pool = ClassPool(files, vectors)
    accepted, rejected = [(files[0], files[1]), (files[40], files[41])], [(files[2], files[45]), (files[3], files[50])]
    remaining = [(files[i], files[j]) for i, j in [(4, 5), (6, 47), (42, 43), (7, 52), (8, 9)]]
    scores = np.arange(5, dtype=float)[::-1]
    first = learned_order(LearnedModel(pool, Evidence.of(accepted, rejected)), *zip(*remaining), scores, scores)
    second = learned_order(LearnedModel(pool, Evidence.of(accepted[::-1], rejected[::-1])), *zip(*remaining),
                           scores, scores)
    assert list(first) == list(second)
    unknown = LearnedModel(pool, Evidence.of(accepted, rejected)).adjustment(["c/nowhere"], ["c/else"])
    assert unknown.tolist() == [0.0]  # a file the pool never saw gets no learned term


def test_a_timm_embedders_decision_source_parses_back():
    proposal = Proposal("n01440764", "n01440764/a.JPEG", "n01440764/b.JPEG", 0.5, 12, "timm:vit_small_patch14_dinov2")
    assert proposal.source == decision_source("timm:vit_small_patch14_dinov2", 12) == \
        "proposal:timm_vit_small_patch14_dinov2:12"
    assert proposal_source(proposal.source) == ("timm_vit_small_patch14_dinov2", 12)
    for label in ("pixels", "timm-vit_small_patch14_dinov2.lvd142m", "torchvision-resnet18@r18", "checkpoint-run 1"):
        parsed = proposal_source(decision_source(label, 7))
        assert parsed is not None and parsed[1] == 7 and ":" not in parsed[0] and " " not in parsed[0]


@pytest.fixture
def curated(tmp_path, sample_images):
    """A real project: proposals for three classes of the sample, and the curation service."""
    from curation_app.proposals.propose import propose
    from curation_app.service import Curation
    from pair_manifest.classes import load_selection
    from tests.curation_app.proposals_support import classes_csv

    wnids = ("n02129165", "n03085013", "n07720875")
    csv = classes_csv(tmp_path / "classes.csv", wnids)
    propose(sample_images, tmp_path / "project", classes=str(csv), workers=1)
    curation = Curation(sample_images, tmp_path / "project", load_selection(csv))
    yield curation, wnids
    curation.store.close()


def test_the_apps_next_pair_follows_the_re_ranked_order(curated):
    """Decisions taken through the service change what it shows next: the book's learned order,
    not the rank order of proposals.parquet."""
    curation, wnids = curated
    wnid = wnids[0]
    book = curation.proposals
    view = curation.set_class("ann", wnid)
    moved = False
    for step in range(12):
        a, b = view.item.files
        verdict = "reject" if step % 3 else "accept"
        view = curation.decide("ann", view.item.key, verdict)
        assert view.item.wnid == wnid
        learned = [(p.file_a, p.file_b) for p in book.for_class(wnid)]
        snapshot = curation.store.decided_pairs(wnid)
        used = curation.store.used_images(wnid)
        in_rank_order = [(p.file_a, p.file_b) for p in book.all_for_class(wnid)
                         if (p.file_a, p.file_b) not in snapshot and not {p.file_a, p.file_b} & used]
        open_learned = [p for p in learned if not set(p) & used]
        assert view.item.files == open_learned[0]  # the app shows the first open pair of the learned order
        moved |= open_learned[0] != in_rank_order[0]
    assert moved, "twelve decisions never changed which pair comes next"
    book.learning = False  # the reference: without learning, the rank order of what is undecided
    snapshot = curation.store.decided_pairs(wnid)
    assert [(p.file_a, p.file_b) for p in book.for_class(wnid)] == [
        (p.file_a, p.file_b) for p in book.all_for_class(wnid) if (p.file_a, p.file_b) not in snapshot]


def test_the_book_refits_only_when_the_decisions_change(tmp_path, curated):
    curation, wnids = curated
    book = ProposalBook(curation.project_dir)
    proposals = book.all_for_class(wnids[1])
    evidence = Evidence.of([(proposals[0].file_a, proposals[0].file_b)],
                           [(proposals[1].file_a, proposals[1].file_b)])
    model = book.model(wnids[1], evidence)
    assert model is not None and book.model(wnids[1], evidence) is model
    assert book.model(wnids[1], Evidence.of(evidence.accepted)) is not model
    remaining = book.next_pairs(wnids[1], evidence)
    assert {(p.file_a, p.file_b) for p in remaining} == {(p.file_a, p.file_b) for p in proposals[2:]}
