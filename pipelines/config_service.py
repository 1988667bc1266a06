"""The ``reader.service:`` section: read the training split through a tf.data service
(`tf.data.experimental.service`), so that reading, shuffling, parsing and padding run on
worker processes (other machines, or other cores) and the trainer only receives batches.

Start a dispatcher and workers with ``tfstream data-service dispatcher|worker`` (see
`tfstream.cli_data_service`), then point the config at the dispatcher.

Example:
    >>> ServiceOptions(dispatcher="grpc://localhost:5050").processing_mode
    'distributed_epoch'
    >>> ServiceOptions(dispatcher="localhost:5050")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: reader.service.dispatcher: expected grpc://HOST:PORT ...
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, StrictStr, model_validator

from tfstream.pipelines.config_errors import check, show
from tfstream.pipelines.config_types import Section

# grpc://host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
_ADDRESS = re.compile(r"grpc://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")
_JOB_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


class ServiceOptions(Section):
    """Where and how the training split is read through a tf.data service.

    Attributes:
        dispatcher: the dispatcher's address, ``grpc://HOST:PORT``.
        processing_mode: ``distributed_epoch`` (each record once per epoch, split by
            shard among the workers) or ``parallel_epochs`` (every worker reads the whole
            split: an epoch holds workers x the split's records).
        job_name: trainers that give the same name share one job (they split its
            records between them); None: each trainer has a job of its own.
    """

    _key_path = "reader.service"
    dispatcher: StrictStr = Field(
        description="The tf.data service dispatcher, grpc://HOST:PORT (start one with `tfstream data-service "
                    "dispatcher --port PORT`, and workers with `tfstream data-service worker --dispatcher "
                    "grpc://HOST:PORT`). The training split is then read, shuffled, parsed and padded on the workers; "
                    "the validation and eval splits are still read in this process, in their stored order (default "
                    "`reader.service: null`: everything in this process).")
    processing_mode: Literal["distributed_epoch", "parallel_epochs"] = Field(
        "distributed_epoch",
        description="distributed_epoch: the workers share the split's shards, so an epoch holds each record once, as "
                    "training expects (at most one worker per shard works); parallel_epochs: every worker reads the "
                    "whole split, so an epoch holds (workers x the split's) records, and with reader.seed every "
                    "worker shuffles in the same order.")
    job_name: Optional[StrictStr] = Field(
        None, description="Trainers giving the same name share one job and split its records between them (default: "
                          "each trainer has a job of its own, and reads the whole epoch).")

    @model_validator(mode="after")
    def _rules(self) -> ServiceOptions:
        match = _ADDRESS.fullmatch(self.dispatcher)
        check(match is not None and 1 <= int(match["port"]) <= 65535,
              f"reader.service.dispatcher: expected grpc://HOST:PORT (the address `tfstream data-service "
              f"dispatcher` prints, e.g. grpc://trainer-1:5050), got {show(self.dispatcher)}; write the host and "
              f"the port after grpc://")
        check(self.job_name is None or _JOB_NAME.fullmatch(self.job_name) is not None,
              f"reader.service.job_name: expected 1..128 letters, digits, '.', '_' or '-', got {show(self.job_name)}; "
              f"rename it, or leave it out (each trainer then has a job of its own)")
        return self
