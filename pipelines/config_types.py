"""The building blocks of the job config's sections (`config`, `read_options`): strict
numbers (a NumPy number is a number, ``"3"`` and ``true`` are not, NaN and infinities
are refused), YAML lists kept as tuples, read-only mappings, the numeric settings' upper
bounds, and `Section`, the frozen base class whose errors are one-line `ConfigError`s.

Example:
    >>> within("reader.cycle_length", 100_000, 1, MAX_CYCLE_LENGTH, "a thread each")
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: reader.cycle_length: expected 1..1024, got 100000; a thread each
"""

from __future__ import annotations

import contextvars
import numbers
from typing import Annotated, Any, ClassVar, Optional, TypeVar, Union

from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, StrictFloat, StrictInt,
                      ValidationError)
from pydantic_core import PydanticCustomError

from tfstream.pipelines.config_errors import ConfigError, config_error, show


def _list_only(value: Any) -> Any:
    # pydantic's lax tuple also takes a set, whose order is arbitrary: take what YAML calls a list
    if isinstance(value, (list, tuple)):
        return value
    raise PydanticCustomError("tuple_type", "Input should be a list")


def _plain_number(value: Any) -> Any:
    # A NumPy number from Python code (`batch_size=np.int64(32)`) is a number; a string or
    # a bool from YAML is not, and the strict types below still refuse it.
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float)) and hasattr(value, "item"):
        return value.item()
    return value


class FrozenDict(dict):
    """A config's mapping (``split.fractions``, ``output.num_shards``): read-only like the
    rest of a frozen config, yet a plain dict to JSON and to pickle (Beam pickles configs)."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config is frozen; make a changed copy with tfstream.pipelines.config.replace(...)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return FrozenDict, (dict(self),)


# The numeric settings' upper bounds (each field's description gives its own): far past
# what any job uses, and below what makes TensorFlow or Keras allocate or spawn without
# limit (a shuffle buffer of 10**12 records crashed TensorFlow; 100,000 interleaved
# shards, 100,000 threads).
MAX_CYCLE_LENGTH = 1024  # threads, one per shard read in parallel
MAX_SHUFFLE_BUFFER = 100_000_000  # records; 2 copies x 64 bytes of overhead each: 12 GiB
MAX_PREFETCH = 1024  # batches held ready
MAX_MEMORY_MB = 1 << 24  # 16 TiB
MAX_VECTOR_VALUES = 10_000_000  # values of a vector feature, per example
MAX_STEP_VALUES = 100_000  # values per sequence step
MAX_SEQUENCE_STEPS = 10_000_000
MAX_RECORD_VALUES = 1 << 29  # float32 values in one record: a protobuf holds at most 2 GiB
MAX_CLASSES = 100_000
MAX_UNITS = 65_536  # per layer
MAX_LAYERS = 100
MAX_EMBEDDING_DIM = 16_384
MAX_SHARDS = 10_000  # per split: a shard is a file, written by one worker
MAX_SHARD_MB = 4096  # output.target_shard_mb: a worker writes (write_arrays: sorts) a shard at a time
FLOAT32_MAX = 3.4028234663852886e38

_T = TypeVar("_T")
Items = Annotated[tuple[_T, ...], BeforeValidator(_list_only)]  # a YAML list, kept as a tuple
Key = Annotated[str, BeforeValidator(str)]  # a mapping's key, such as a split name: YAML may read `1:` as an int
Int = Annotated[StrictInt, BeforeValidator(_plain_number)]
Float = Annotated[StrictFloat, AllowInfNan(False), BeforeValidator(_plain_number)]  # nan and inf refused
FrozenMapping = Annotated[dict[Key, _T], AfterValidator(FrozenDict)]


def within(key: str, value: Optional[Union[int, float]], low: Union[int, float], high: Union[int, float],
           why: str) -> None:
    """Refuse ``value`` (None: not set) outside ``low..high``; above ``high``, the message
    says ``why`` the bound is there (every numeric setting has one: a value far past what
    any job uses makes TensorFlow or Keras allocate or spawn without limit, and crash)."""
    if value is not None and not low <= value <= high:
        raise ConfigError(f"{key}: expected {low}..{high}, got {show(value)}" + (f"; {why}" if value > high else ""))


class Section(BaseModel):
    """A config section: frozen, with no unknown keys. Built directly
    (``ReadOptions(batch_size=32)``) or loaded, a bad value raises a one-line
    `ConfigError`, as on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _key_path: ClassVar[str] = ""  # where the section sits in a config, for messages

    def __init__(self, **data: Any):
        if _LOADING.get():  # a section inside a config being loaded: `validate` words the error
            super().__init__(**data)
            return
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error(e, type(self), data) from None


_Model = TypeVar("_Model", bound=Section)


def replace(model: _Model, **changes: Any) -> _Model:
    """A copy of a config section with ``changes``, checked again as on load; e.g.
    ``replace(job, train=replace(job.train, epochs=4))``.

    Raises:
        ConfigError: naming the key path and the fix.
    """
    return validate(type(model), {**dict(model), **changes})


# True while `validate` loads a config: its sections' own __init__ then leaves the
# wording of an error to `validate`, which knows the whole key path.
_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("tfstream_config_loading", default=False)


def validate(model: type[_Model], data: Any) -> _Model:
    """``model`` built from plain ``data``; a bad value raises a one-line `ConfigError`
    naming its whole key path."""
    token = _LOADING.set(True)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise config_error(e, model, data) from None
    finally:
        _LOADING.reset(token)
