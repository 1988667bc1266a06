"""Warm start: a candidate starts from the champion's weights when both models have the
same inputs and layers (the approach of TFX's Trainer warm start, done here by layer).

Compatibility:
- the schema (features and label, with their types and shapes) and the ``model:``
  section are the same;
- each vocabulary is the champion's, **extended, never reordered**
  (`extend_vocabularies`): the champion's tokens keep their ids, tokens new in the
  window are appended (most frequent first) while ``vocab_size`` allows, so an
  embedding row keeps meaning the same token.

Then every trainable weight is copied (`transfer_weights`): equal shapes as they are,
an embedding that grew with its vocabulary row by row (the new rows keep their fresh
initialization). Normalization statistics are the window's own (not copied), and the
optimizer starts afresh. Anything else that differs means training from scratch, and
the run record says why.

Example:
    >>> champion = {"splits": {"train": {"statistics": {"features": {"carrier": {"vocabulary": [["UA", 9], ["AA", 5]]}}}}}}
    >>> window = {"splits": {"train": {"statistics": {"features": {"carrier": {"vocabulary": [["AA", 12], ["B6", 7], ["UA", 3]]}}}}}}
    >>> out = extend_vocabularies(window, champion, "train", {"carrier": None})
    >>> out["splits"]["train"]["statistics"]["features"]["carrier"]["vocabulary"]
    [['UA', 3], ['AA', 12], ['B6', 7]]
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Mapping, Optional

_log = logging.getLogger(__name__)


class IncompatibleModel(ValueError):
    """The champion's weights cannot start the candidate; the message says why."""


def compatibility(champion_data: Mapping[str, Any], window_data: Mapping[str, Any], train_split: str = "train", *,
                  champion_model: Optional[Mapping[str, Any]] = None,
                  model: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """Why the champion cannot warm-start a candidate on ``window_data`` (None: it can).

    Args:
        champion_data: the manifest the champion was trained on (its version's
            ``window.json``).
        window_data: the candidate's window manifest.
        train_split: the training split, whose statistics build the model.
        champion_model, model: the ``model:`` sections the champion was trained with
            (recorded with its version) and the candidate's; default: the sections the
            manifests' configs recorded (the config that wrote the datasets).
    """
    if champion_data.get("schema") != window_data.get("schema"):
        return "the schema differs from the champion's (features or label added, removed or retyped)"
    if champion_model is None or model is None:
        champion_model = (champion_data.get("options") or {}).get("config", {}).get("model")
        model = (window_data.get("options") or {}).get("config", {}).get("model")
    if champion_model != model:
        return "the model: section differs from the champion's"
    old = champion_data["splits"][train_split]["statistics"]["features"]
    new = window_data["splits"][train_split]["statistics"]["features"]
    for name, stats in new.items():
        # StringLookup puts the out-of-vocabulary ids first: another count shifts every token's id
        if isinstance(stats, Mapping) and stats.get("oov_buckets") != (old.get(name) or {}).get("oov_buckets"):
            return f"feature {name!r}: oov_buckets differs from the champion's (every token's id would move)"
    return None


def extend_vocabularies(window_data: Mapping[str, Any], champion_data: Mapping[str, Any], train_split: str,
                        vocab_sizes: Mapping[str, Optional[int]]) -> dict[str, Any]:
    """``window_data`` with each vocabulary of ``train_split`` made the champion's,
    extended: the champion's tokens first, in its order (with the window's counts, 0 for
    a token the window lacks), then the window's other tokens in the window's order,
    while ``vocab_sizes[feature]`` (None: no limit) allows.

    Returns:
        A changed deep copy (``window_data`` is not modified).
    """
    out = copy.deepcopy(dict(window_data))
    features = out["splits"][train_split]["statistics"]["features"]
    old_features = champion_data["splits"][train_split]["statistics"]["features"]
    for name, limit in vocab_sizes.items():
        new = features.get(name, {}).get("vocabulary")
        old = old_features.get(name, {}).get("vocabulary")
        if new is None or old is None:
            continue
        counts = {token: n for token, n in new}
        kept = [[token, counts.get(token, 0)] for token, _ in old]
        seen = {token for token, _ in old}
        room = None if limit is None else max(limit - len(kept), 0)
        added = [[token, n] for token, n in new if token not in seen]
        features[name]["vocabulary"] = kept + (added if room is None else added[:room])
    return out


def transfer_weights(candidate, champion) -> int:
    """Copy the champion's trainable weights into ``candidate`` (built by the same
    builder), layer by layer in order.

    Returns:
        How many weight tensors were copied.

    Raises:
        IncompatibleModel: the layers differ (kind, count, or a weight's shape other than
            an embedding's rows growing), naming the first difference.
    """
    import numpy as np

    new_layers, old_layers = candidate.layers, champion.layers
    if len(new_layers) != len(old_layers):
        raise IncompatibleModel(f"the candidate has {len(new_layers)} layers, the champion {len(old_layers)}")
    pairs = []
    for new, old in zip(new_layers, old_layers):
        if type(new) is not type(old):
            raise IncompatibleModel(f"layer {new.name!r} is a {type(new).__name__}, the champion's "
                                    f"{old.name!r} a {type(old).__name__}")
        new_w, old_w = new.trainable_weights, old.trainable_weights
        if len(new_w) != len(old_w):
            raise IncompatibleModel(f"layer {new.name!r} has {len(new_w)} trainable weights, the champion's "
                                    f"{len(old_w)}")
        for a, b in zip(new_w, old_w):
            shape, was = tuple(a.shape), tuple(b.shape)
            grown = (type(new).__name__ == "Embedding" and len(shape) == 2 and shape[1] == was[1]
                     and shape[0] >= was[0])
            if shape != was and not grown:
                raise IncompatibleModel(f"layer {new.name!r}: weight {a.name!r} has shape {shape}, the champion's "
                                        f"{was}")
            pairs.append((a, b, shape != was))
    for a, b, grown in pairs:  # all checked first: a refused warm start changes nothing
        value = np.asarray(b.numpy())
        if grown:
            fresh = np.asarray(a.numpy()).copy()
            fresh[:value.shape[0]] = value
            value = fresh
        a.assign(value)
    return len(pairs)
