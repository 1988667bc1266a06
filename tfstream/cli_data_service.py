"""`tfstream data-service`: the servers of a tf.data service, for ``reader.service``.

    tfstream data-service dispatcher --port P [--work-dir D] [--host H]
    tfstream data-service worker     --dispatcher grpc://HOST:PORT --port P [--host H]

Each prints one line saying where it listens (``--port 0`` picks a free port), then
serves until it is stopped: Ctrl-C exits with status 130, SIGTERM stops it cleanly with
status 0. Start one dispatcher, then workers on the machines that should read (each
needs the dataset's files at the same paths or URLs as the trainer), and point the job
config's ``reader.service.dispatcher`` at the dispatcher's address.

The dispatcher with ``--work-dir`` journals its state there (fault-tolerant mode): a
restarted dispatcher resumes its jobs. A worker tells the dispatcher the address it is
reachable at, ``--host`` (default: this machine's hostname) and its port.
"""

from __future__ import annotations

import signal
import socket
import threading


def add_parsers(sub) -> None:
    """Add ``data-service`` to the `tfstream` command's subparsers."""
    p = sub.add_parser("data-service", help="run a tf.data service dispatcher or worker (for reader.service: the "
                                            "training split read on other processes or machines)")
    servers = p.add_subparsers(dest="server", required=True, metavar="SERVER")
    d = servers.add_parser("dispatcher", help="the dispatcher: hands out the work and tracks the workers")
    d.add_argument("--port", type=int, required=True, help="the port to listen on (0: a free one, printed)")
    d.add_argument("--work-dir", help="journal the dispatcher's state here (fault-tolerant mode: a restarted "
                                      "dispatcher resumes its jobs)")
    d.add_argument("--host", help="the host name printed in its address (default: this machine's hostname)")
    w = servers.add_parser("worker", help="a worker: runs the input pipelines it is given, serves their batches")
    w.add_argument("--dispatcher", required=True, help="the dispatcher's address, grpc://HOST:PORT")
    w.add_argument("--port", type=int, required=True, help="the port to listen on (0: a free one, printed)")
    w.add_argument("--host", help="the host the trainers reach this worker at (default: this machine's hostname)")


def run_data_service(args) -> int:
    """Start the server ``args`` names, print where it listens, and serve until
    SIGTERM (returns 0) or Ctrl-C (raises KeyboardInterrupt)."""
    from tfstream.pipelines.config_errors import ConfigError
    from tfstream.pipelines.config_service import ServiceOptions

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 0..65535 (0: a free port), got {args.port}")
    host = args.host or socket.gethostname()
    import tensorflow as tf

    svc = tf.data.experimental.service
    if args.server == "dispatcher":
        server = svc.DispatchServer(svc.DispatcherConfig(port=args.port, work_dir=args.work_dir,
                                                         fault_tolerant_mode=args.work_dir is not None))
        port = int(server._address.rsplit(":", 1)[1])  # the bound port (the API's `target` says localhost)
        print(f"tfstream data-service: dispatcher listening on grpc://{host}:{port}"
              + (f" (state journaled in {args.work_dir})" if args.work_dir else ""), flush=True)
    else:
        try:  # checked as the config's
            dispatcher = ServiceOptions(dispatcher=args.dispatcher).dispatcher
        except ConfigError as e:
            raise ConfigError(str(e).replace("reader.service.dispatcher", "--dispatcher", 1)) from None
        # %port% is replaced by the port bound: the address the dispatcher gives the trainers.
        server = svc.WorkerServer(svc.WorkerConfig(dispatcher_address=dispatcher.split("://", 1)[1],
                                                   worker_address=f"{host}:%port%", port=args.port))
        port = int(server._address.rsplit(":", 1)[1])
        print(f"tfstream data-service: worker listening on grpc://{host}:{port}, serving dispatcher {dispatcher}",
              flush=True)
    # Not server.join(): it blocks in C++, where Python's signal handlers never run.
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    return 0
