"""K-fold splits shared by the cross-validated calibrators (ODIR lambda, :func:`select`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Folds = list[tuple[NDArray[np.intp], NDArray[np.intp]]]


def make_folds(y: NDArray[np.int64], cv: int, seed: int) -> Folds:
    """``cv`` shuffled ``(train, test)`` index pairs over ``len(y)`` rows, seeded.

    Stratified by class (scikit-learn's ``StratifiedKFold``) when every present class has at
    least ``cv`` members, plain shuffled ``KFold`` otherwise. Raises ``ValueError`` when there
    are fewer rows than folds.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = int(y.shape[0])
    if isinstance(cv, bool) or not isinstance(cv, int | np.integer) or cv < 2:
        raise ValueError(f"cv must be an int >= 2; got {cv!r}")
    if n < 2 * cv:
        raise ValueError(f"{cv}-fold cross-validation needs at least {2 * cv} rows; got {n}")
    counts = np.bincount(y)
    counts = counts[counts > 0]
    splitter: KFold | StratifiedKFold
    if counts.min() >= cv:
        splitter = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=int(cv), shuffle=True, random_state=seed)
    return [
        (np.asarray(tr, dtype=np.intp), np.asarray(te, dtype=np.intp))
        for tr, te in splitter.split(np.zeros(n), y)
    ]
