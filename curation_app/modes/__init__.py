"""The three kinds of work, one strategy each, behind one interface (`base.Strategy`): verify a
proposed or sampled pair, pick a partner for an anchor, review someone else's decision.

A strategy only finds and re-checks items *within one class*; which class an annotator works on,
and that no two annotators ever get the same item, is `curation_app.assignment`'s job. A new mode
is a module here with a `Strategy` subclass, listed in `strategies()` and in `workstate.MODES`.
"""
from __future__ import annotations

from curation_app.modes.base import Strategy, Workspace
from curation_app.modes.pick import PickStrategy
from curation_app.modes.review import ReviewStrategy
from curation_app.modes.verify import VerifyStrategy


def strategies(workspace: Workspace) -> dict[str, Strategy]:
    return {strategy.mode: strategy for strategy in (VerifyStrategy(workspace), PickStrategy(workspace),
                                                      ReviewStrategy(workspace))}


__all__ = ["PickStrategy", "ReviewStrategy", "Strategy", "VerifyStrategy", "Workspace", "strategies"]
