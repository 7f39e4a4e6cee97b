"""Reaching Ray for `run --executor ray` (ray_executor.connect): what Ray 2.60 needs before
`ray.init`, said in one line when it is missing, and local instances kept on the loopback.

What Ray 2.60 does, as observed (docs/ray.md quotes it):
- Token authentication. `ray start --head` turns it on when RAY_AUTH_MODE=token, or when the
  variable is unset and a token is found (RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names,
  else ~/.ray/auth_token); a local `ray.init()` turns it on and writes ~/.ray/auth_token. Joining
  with an explicit address never turns it on: `ray start --address` and `ray.init(address=...)`
  send no token unless RAY_AUTH_MODE=token, and then retry for 20 s before a ConnectionError
  that does not say why. connect asks the GCS itself first (one gRPC call, with and without the
  token) and names what is missing.
- Loopback. Ray rewrites 127.0.0.1, localhost and ::1 to the machine's network address, in
  `--address`, `--node-ip-address` and `ray.init(_node_ip_address=...)` alike
  (ray._private.services.resolve_ip_for_localhost), unless multi-node clusters are off, as they
  are on macOS and Windows (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). With that switch a node is
  127.0.0.1 and Ray's servers listen on 127.0.0.1 only; any other node address leaves them
  listening on every interface. A local instance started here gets the switch; a driver joins an
  instance bound so with it too.

Ray is imported in functions only; every private Ray name used here is reached in a try, so a Ray
that moved it loses the nicer message, not the connection.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Iterator

LOOPBACK = "127.0.0.1"
CLUSTERS_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's own name: "0" makes a node 127.0.0.1
TOKEN_PLACES = "RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token"
HEAD_TOKEN = "`ray get-auth-token` on the head prints it"
PROBE_TIMEOUT_S = 5.0


def split(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a plain HOST:PORT address; None for anything else (ray://, auto)."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "://" in (address or ""):
        return None
    return host.strip("[]"), int(port)


def _tcp(host: str, port: int, timeout: float) -> OSError | None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return e
    return None


def found_cluster() -> str | None:
    """The address `ray.init()` without one would join (RAY_ADDRESS, else the cluster `ray start`
    last started on this machine), as written there; None: it would start a local instance."""
    try:
        from ray._private import services

        return services.get_ray_address_from_environment(None, None)
    except Exception:  # a Ray that moved it: ray.init decides, as before
        return None


def token() -> tuple[str | None, str]:
    """The token `ray.init` would send in token mode, and where it comes from (Ray's order).
    None and why when there is none; the token itself is never printed."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else Path.home() / ".ray" / "auth_token"
    where = f"RAY_AUTH_TOKEN_PATH ({path})" if named else str(path)
    try:
        text = path.read_text().strip()
    except OSError as e:
        return None, f"{where}: {e.strerror or e}"
    return (text, where) if text else (None, f"{where} is empty")


def _gcs_answers(host: str, port: int, tok: str | None) -> str | None:
    """Ask the GCS for its cluster id: "ok", "token" (it wants a token, or another one), or None
    when the answer says nothing about authentication (not a GCS, a Ray without this call)."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except Exception:
        return None
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    metadata = [("authorization", f"Bearer {tok}")] if tok else None
    try:
        with grpc.insecure_channel(target) as channel:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S, metadata=metadata)
    except grpc.RpcError as e:
        return "token" if e.code() == grpc.StatusCode.UNAUTHENTICATED else None
    except Exception:
        return None
    return "ok"


def preflight(address: str, given: bool = True) -> str | None:
    """What stops `ray.init` from joining the cluster at `address`, in one line; None if nothing
    that can be told beforehand. `given`: the user named it (--address, RAY_ADDRESS); a cluster
    found on this machine gets a token automatically when one is here, as Ray does."""
    hp = split(address)
    if hp is None:
        return None
    host, port = hp
    err = _tcp(host, port, timeout=10)  # Ray itself retries a dead address for minutes
    if err is not None:
        return (f"cannot reach Ray at {address}: {err.strerror or err} (start the head there with "
                f"`ray start --head --port {port}`, and open port {port} from this machine to it)")
    if _gcs_answers(host, port, None) != "token":
        return None  # no token needed (a token sent anyway is ignored), or nothing to tell
    mode = os.environ.get("RAY_AUTH_MODE")
    tok, where = token()
    sends = (mode or "").lower() == "token" or (mode is None and not given and tok is not None)
    if not sends:
        now = f"RAY_AUTH_MODE={mode}" if mode else "RAY_AUTH_MODE is unset"
        return (f"the Ray cluster at {address} wants its token and {now} here, so none is sent: "
                f"export RAY_AUTH_MODE=token, with the cluster's token in {TOKEN_PLACES} ({HEAD_TOKEN})")
    if tok is None:
        return (f"the Ray cluster at {address} wants its token and there is none here ({where}): put it in "
                f"{TOKEN_PLACES} ({HEAD_TOKEN})")
    if _gcs_answers(host, port, tok) == "token":
        return (f"the Ray cluster at {address} refused the token from {where}: it is not the cluster's "
                f"({HEAD_TOKEN}; every node and this machine need the same one)")
    return None


def failure_line(e: BaseException) -> str:
    """One line for what `ray.init` raised: an authentication error wherever it lies in the chain
    (Ray wraps it in a ConnectionError), else the first line of `e`."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ == "AuthenticationError":
            text = str(cause).split(". Ensure")[0].replace("RPC error: ", "")
            return f"{text.splitlines()[0]} (token authentication: RAY_AUTH_MODE=token and the cluster's token " \
                   f"in {TOKEN_PLACES} on every node and here)"
        cause = cause.__cause__ or cause.__context__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """While Ray starts or joins a node in this block, 127.0.0.1 stays 127.0.0.1: Ray's switch
    for machines without multi-node clusters, in this process (the constant it read at import)
    and in the processes it starts (the variable). Both are put back after."""
    try:
        from ray._private import ray_constants
    except Exception:  # a Ray that moved it: the variable alone still reaches the processes it starts
        ray_constants = None
    before_env = os.environ.get(CLUSTERS_SWITCH)
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[CLUSTERS_SWITCH] = "0"
    if ray_constants is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(CLUSTERS_SWITCH, None)
        else:
            os.environ[CLUSTERS_SWITCH] = before_env
        if ray_constants is not None and before is not None:
            ray_constants.ENABLE_RAY_CLUSTER = before


def on_loopback_only(address: str | None) -> bool:
    """Whether the cluster at `address` (127.0.0.1, localhost or ::1) answers on the loopback
    only: an instance bound so, which Ray's rewrite of the address to the network one would miss."""
    hp = split(address)
    if hp is None:
        return False
    host, port = hp
    try:
        from ray._common.network_utils import is_localhost
        from ray._private import services

        if not is_localhost(host):
            return False
        rewritten = services.resolve_ip_for_localhost(host)
    except Exception:
        return False
    return rewritten != host and _tcp(rewritten, port, timeout=2) is not None and _tcp(host, port, timeout=2) is None


def init_local(**kwargs: Any) -> Any:
    """`ray.init` of a new local instance whose node is 127.0.0.1, so that Ray's servers listen
    on the loopback only (a cluster found on this machine is not joined: address "local")."""
    import ray

    with loopback_node():
        return ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)


def init_join(address: str | None, **kwargs: Any) -> Any:
    """`ray.init` joining `address` (None: the cluster found on this machine), on the loopback
    when the cluster answers there only."""
    import ray

    if on_loopback_only(address or found_cluster()):
        with loopback_node():
            return ray.init(address=address, _node_ip_address=LOOPBACK, **kwargs)
    return ray.init(address=address, **kwargs)
