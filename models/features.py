"""Mixed feature types for the linear and half-space models: numbers, booleans, strings.

An event's ``x`` holds numbers, booleans and strings (the wire contract). River's own
answer is a union of typed branches::

    compose.TransformerUnion(
        compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
        compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
    )

:class:`MixedScaler` computes exactly that, in one pass over the features
(``tests/unit/test_features.py`` checks that both give the same transforms and
predictions on a mixed stream). Written by hand for speed: the union walks an event
through three pipelines and two selections and costs ``logreg`` (predict then learn)
20.7 µs a record on Phishing, against 8.9 µs for the plain ``StandardScaler`` it
replaces, which takes no strings; one pass costs 9.7 µs there, and 8.2 µs against the
union's 17.5 µs on a stream with strings (``bench/mixed_features.py``, medians).
"""

from __future__ import annotations

import collections
import math
import numbers
from typing import Any, Literal

from river import base, compose, preprocessing

__all__ = ["MixedScaler"]

Scale = Literal["standard", "minmax"]


OTHER, NUMBER, STRING = 0, 1, 2


def _kind(value: Any) -> int:
    """What :class:`river.compose.SelectType` makes of a value (booleans are numbers)."""
    if isinstance(value, str):
        return STRING
    return NUMBER if isinstance(value, numbers.Number) else OTHER


class MixedScaler(base.Transformer):
    """Scale numbers and booleans (as 0/1), one-hot encode strings, in one pass.

    Numbers are scaled as :class:`river.preprocessing.StandardScaler` scales them
    (``"standard"``: running mean and variance) or as
    :class:`river.preprocessing.MinMaxScaler` does (``"minmax"``: running min and max);
    a boolean is the number 0 or 1. A
    string feature ``f`` with value ``v`` becomes ``f_v`` = 1, as
    :class:`river.preprocessing.OneHotEncoder` with ``drop_zeros=True`` encodes it: the
    other values of ``f`` are left out rather than sent as zeros, so a feature with
    many values costs nothing per event. Anything else (``None``, a list) is left out,
    as :class:`river.compose.SelectType` leaves it out.

    Parameters
    ----------
    scale
        ``"standard"`` (zero mean, unit variance) or ``"minmax"`` (into [0, 1]).

    Examples
    --------
    >>> scaler = MixedScaler()
    >>> for x in [{"amount": 10.0, "new": True, "country": "FR"},
    ...           {"amount": 30.0, "new": False, "country": "DE"}]:
    ...     scaler.learn_one(x)
    >>> scaler.transform_one({"amount": 40.0, "new": True, "country": "JP"})
    {'country_JP': 1, 'amount': 2.0, 'new': 1.0}

    """

    def __init__(self, scale: Scale = "standard") -> None:
        if scale not in ("standard", "minmax"):
            msg = f"scale must be 'standard' or 'minmax', not {scale!r}"
            raise ValueError(msg)
        self.scale = scale
        self._standard = scale == "standard"
        # standard: count, mean, variance (Welford); minmax: min, max. Per feature name.
        self.counts: collections.Counter[Any] = collections.Counter()
        self.means: collections.defaultdict[Any, float] = collections.defaultdict(float)
        self.vars: collections.defaultdict[Any, float] = collections.defaultdict(float)
        self.min: dict[Any, float] = {}
        self.max: dict[Any, float] = {}

    def to_river(self) -> compose.TransformerUnion:
        """River's own composition this scaler stands for, in the state it has learned.

        The statistics are copied (the scaler is left as it is): the union transforms
        as this scaler does and learns on as it would. ``riverbed export`` pickles
        models with it, so that they load where only River is installed.

        Examples
        --------
        >>> scaler = MixedScaler()
        >>> for x in [{"amount": 10.0, "country": "FR"}, {"amount": 30.0, "country": "DE"}]:
        ...     scaler.learn_one(x)
        >>> union = scaler.to_river()
        >>> x = {"amount": 40.0, "country": "JP"}
        >>> union.transform_one(x) == scaler.transform_one(x)
        True
        >>> MixedScaler("minmax").to_river()
        TransformerUnion (
          Pipeline (
            Select (
              <class 'numbers.Number'>
            ),
            MinMaxScaler (
              window_size=None
            )
          ),
          Pipeline (
            Select (
              <class 'str'>
            ),
            OneHotEncoder (
              categories=None
              drop_zeros=True
              drop_first=False
            )
          )
        )

        """
        scaler: base.Transformer
        if self._standard:
            standard = preprocessing.StandardScaler()
            standard.counts.update(self.counts)
            standard.means.update(self.means)
            standard.vars.update(self.vars)
            scaler = standard
        else:
            minmax = preprocessing.MinMaxScaler()
            for name, low in self.min.items():
                minmax.min[name].update(low)
            for name, high in self.max.items():
                minmax.max[name].update(high)
            scaler = minmax
        return compose.TransformerUnion(
            compose.SelectType(numbers.Number) | scaler,
            compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
        )

    # A number's class is float, int or bool nearly always: three identity tests find
    # it, and only other values pay for the isinstance tests of _kind.

    def learn_one(self, x: dict[Any, Any]) -> None:
        if self._standard:
            counts, means, vars_ = self.counts, self.means, self.vars
            for i, xi in x.items():
                t = xi.__class__
                if t is not float and t is not int and t is not bool and _kind(xi) != NUMBER:
                    continue
                counts[i] += 1
                old_mean = means[i]
                means[i] += (xi - old_mean) / counts[i]
                vars_[i] += ((xi - old_mean) * (xi - means[i]) - vars_[i]) / counts[i]
            return
        lo, hi = self.min, self.max
        for i, xi in x.items():
            t = xi.__class__
            if t is not float and t is not int and t is not bool and _kind(xi) != NUMBER:
                continue
            if xi < lo.get(i, math.inf):
                lo[i] = xi
            if xi > hi.get(i, -math.inf):
                hi[i] = xi

    def transform_one(self, x: dict[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        hot: list[str] | None = None  # one-hot names
        if self._standard:
            means, vars_ = self.means, self.vars
            for i, xi in x.items():
                t = xi.__class__
                if t is not float and t is not int and t is not bool:
                    kind = _kind(xi)
                    if kind == STRING:
                        if hot is None:
                            hot = []
                        hot.append(f"{i}_{xi}")
                    if kind != NUMBER:
                        continue
                v = vars_[i]
                out[i] = (xi - means[i]) / v**0.5 if v else 0.0
        else:
            lo, hi = self.min, self.max
            for i, xi in x.items():
                t = xi.__class__
                if t is not float and t is not int and t is not bool:
                    kind = _kind(xi)
                    if kind == STRING:
                        if hot is None:
                            hot = []
                        hot.append(f"{i}_{xi}")
                    if kind != NUMBER:
                        continue
                # A name never learned scales to nan, as MinMaxScaler's inf - inf does.
                low = lo.get(i, math.inf)
                d = hi.get(i, -math.inf) - low
                out[i] = (xi - low) / d if d else 0.0
        if hot is None:
            return out
        # TransformerUnion's order: the last branch's names first, and on a clash (a
        # number named "f_v") the first branch's value, in the last branch's place.
        return {**dict.fromkeys(hot, 1), **out}
