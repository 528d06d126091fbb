"""Typed batches: a NamedTuple whose annotations declare what each field holds.

A field is an observation (`Obs`, the env's shape and dtype), an action (`Action`, the
policy's), an action mask (`Mask`: one bool per discrete choice, present exactly when the
layout's env gives masks), a recurrent policy's state (`State`, present exactly when the
layout's policy has memory), or one scalar per transition (`Float`, `Bool`); a field with the
default `()` is optional (absent unless filled). From that declaration `typed_batch` derives the tensor spec of
any leading shape (the compiled steps' input signatures, the TensorArrays of the in-graph
rollout), NumPy storage, and a read-only mapping view (`batch["obs"]`, `"obs" in batch`), so a
new field is one line in one class. TensorFlow is imported only for specs and `map`: NumPy
storage serves processes that never import it (rl_sever.runners.host_runner).
"""

from __future__ import annotations

import typing

import numpy as np


class Obs:
    """An observation field: the env's observation shape and dtype."""


class Action:
    """An action field: the shape and dtype the policy acts in."""


class Mask:
    """The valid actions of the observation: one bool per choice (docs/spaces.md)."""


class State:
    """A recurrent policy's state when it acted on the observation (rl_sever.nn.recurrent)."""


class Float:
    """One float32 per transition."""


class Bool:
    """One bool per transition."""


class Layout(typing.NamedTuple):
    """What Obs and Action fields hold: shapes and dtypes (TensorFlow or NumPy)."""

    obs_shape: tuple
    obs_dtype: object
    action_shape: tuple
    action_dtype: object
    mask_dim: int = 0  # action-mask width (0: the env gives no masks)
    state_dim: int = 0  # recurrent-state width (0: a feed-forward policy)

    def obs_spec(self, lead=(None,)):
        """TensorSpec of observations with leading dims `lead` (a Dict observation's: key ->
        TensorSpec)."""
        import tensorflow as tf

        if isinstance(self.obs_shape, dict):
            return {k: tf.TensorSpec([*lead, *shape], tf.as_dtype(self.obs_dtype[k]))
                    for k, shape in self.obs_shape.items()}
        return tf.TensorSpec([*lead, *self.obs_shape], tf.as_dtype(self.obs_dtype))

    def numpy(self) -> Layout:
        """This layout with NumPy dtypes (for a process without TensorFlow)."""
        obs = ({k: _numpy_dtype(d) for k, d in self.obs_dtype.items()}
               if isinstance(self.obs_dtype, dict) else _numpy_dtype(self.obs_dtype))
        return self._replace(obs_dtype=obs, action_dtype=_numpy_dtype(self.action_dtype))

    def present(self) -> set:
        """The optional kinds this layout always has (masks, recurrent states)."""
        return {kind for kind, dim in ((Mask, self.mask_dim), (State, self.state_dim)) if dim}

    def field(self, kind) -> tuple[tuple, np.dtype]:
        """(shape, NumPy dtype) of one transition's value of a field kind (a Dict
        observation's: key -> shape, key -> dtype)."""
        if kind is Obs:
            if isinstance(self.obs_shape, dict):
                return ({k: tuple(v) for k, v in self.obs_shape.items()},
                        {k: _numpy_dtype(d) for k, d in self.obs_dtype.items()})
            return tuple(self.obs_shape), _numpy_dtype(self.obs_dtype)
        if kind is Mask:
            return (int(self.mask_dim),), np.dtype(bool)
        if kind is State:
            return (int(self.state_dim),), np.dtype(np.float32)
        if kind is Action:
            return tuple(self.action_shape), _numpy_dtype(self.action_dtype)
        return (), np.dtype(np.float32 if kind is Float else bool)


def _numpy_dtype(dtype) -> np.dtype:
    """A NumPy or TensorFlow dtype as NumPy's."""
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def _map(self, fn):
    """`fn` applied to every array of the batch (a Dict observation's per key)."""
    import tensorflow as tf

    return tf.nest.map_structure(fn, self)


def _getitem(self, key):
    return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


def _get(self, key: str, default=None):
    value = getattr(self, key, ())
    return default if isinstance(value, tuple) else value


def typed_batch(cls):
    """Give the NamedTuple `cls` the spec, storage and mapping view of its declared fields."""
    kinds = typing.get_type_hints(cls)
    cls.kinds = {name: kinds[name] for name in cls._fields}
    cls.optional = frozenset(cls._field_defaults)

    def present_fields(klass, layout: Layout, fields=None) -> list[str]:
        """The fields a batch has: all required ones, the optional `fields`, and those of the
        kinds the layout has (masks, recurrent states)."""
        present = set(fields or ()) | (set(klass._fields) - klass.optional)
        present |= {name for name, kind in klass.kinds.items() if kind in layout.present()}
        return [name for name in klass._fields if name in present]

    def spec(klass, layout: Layout, lead=(None,), fields=None):
        """TensorSpecs of the fields (see `present_fields`)."""
        import tensorflow as tf

        def one(kind):
            if kind is Obs:
                return layout.obs_spec(lead)
            shape, dtype = layout.field(kind)
            return tf.TensorSpec([*lead, *shape], tf.as_dtype(dtype))

        return klass(**{name: one(klass.kinds[name])
                        for name in klass.present_fields(layout, fields)})

    def zeros(klass, layout: Layout, lead, fields=None):
        """NumPy storage of `lead` rows, shaped and typed as `spec`."""
        def one(kind):
            shape, dtype = layout.field(kind)
            if isinstance(shape, dict):  # a Dict observation: one array per key
                return {k: np.zeros((*lead, *s), dtype[k]) for k, s in shape.items()}
            return np.zeros((*lead, *shape), dtype)

        return klass(**{name: one(klass.kinds[name])
                        for name in klass.present_fields(layout, fields)})

    def of(klass, batch):
        """`batch` itself, or the batch holding a mapping's fields (a clear error on a missing one)."""
        if isinstance(batch, klass):
            return batch
        missing = [k for k in klass._fields if k not in klass.optional and k not in batch]
        if missing:
            raise KeyError(f"a {klass.__name__} needs the fields {', '.join(missing)}")
        return klass(**{k: batch[k] for k in klass._fields if k in batch})

    cls.present_fields = classmethod(present_fields)
    cls.spec, cls.zeros, cls.of = classmethod(spec), classmethod(zeros), classmethod(of)
    cls.__getitem__ = _getitem
    cls.get = _get
    cls.__contains__ = lambda self, key: _get(self, key) is not None
    cls.keys = lambda self: [k for k in self._fields if k in self]
    cls.items = lambda self: [(k, getattr(self, k)) for k in self.keys()]
    cls.map = _map
    return cls
