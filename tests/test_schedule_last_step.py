"""What the last update's lr is, exactly (issue 30, item 16): ``final_lr_fraction x lr`` for
cosine and linear when ``warmup <= iters - 2``; the full lr when ``warmup = iters - 1`` (``iters =
1`` included), as the README and the schedules module say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxopt_cmp import schedules
from jaxopt_cmp.schedules import make_schedule

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize(("iters", "warmup"), [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2), (10, 8), (10, 9)])
def test_the_last_update_uses_the_final_fraction_only_after_the_warmup(kind, iters, warmup):
    lr_T = np.asarray(make_schedule(kind, 1.0, iters, warmup=warmup, final_lr_fraction=0.1)(np.arange(iters)))
    expected = 0.1 if warmup <= iters - 2 else 1.0
    assert lr_T[-1] == pytest.approx(expected, rel=1e-6)


def test_the_docs_say_so():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "`final_lr_fraction × lr` (`cosine`, `linear`) when `warmup ≤ iters - 2`; with `warmup = iters - 1`" in readme
    )
    doc = " ".join(schedules.__doc__.split())
    assert (
        "``f * lr`` at the last step ``t = iters - 1`` when ``warmup <= iters - 2``; with ``warmup = iters - 1``" in doc
    )
