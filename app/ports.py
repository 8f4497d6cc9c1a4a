"""The kernel's ephemeral port range, and a worker's web ports that lie in it.

Linux hands outgoing connections a local port from ``net.ipv4.ip_local_port_range``
(32768-60999 by default). A server port in that range may be the local end of any
outgoing connection (to Kafka, say) when the server binds it, and stays taken for that
connection's life: the bind fails with "address already in use". A supervisor's worker
processes bind theirs (``RIVERBED_WEB_PORT`` + 1 + slot) at every start and restart, so
the window opens again each time. The local port range and its reserved ports
(``net.ipv4.ip_local_reserved_ports``, which outgoing connections never take) are read
from ``/proc``; elsewhere nothing is known and nothing is said.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_EPHEMERAL", "ephemeral_ports", "exposed_ports", "reserved_ports"]

PROC = Path("/proc/sys/net/ipv4")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default


def ephemeral_ports(proc: Path = PROC) -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (``ip_local_port_range``)."""
    try:
        low, high = (proc / "ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL


def reserved_ports(proc: Path = PROC) -> set[int]:
    """The ports outgoing connections never take (``ip_local_reserved_ports``).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "ip_local_reserved_ports").write_text("6066,40000-40002\\n")
    >>> sorted(reserved_ports(d))
    [6066, 40000, 40001, 40002]

    """
    ports: set[int] = set()
    try:
        text = (proc / "ip_local_reserved_ports").read_text().strip()
        for item in filter(None, text.split(",")):
            low, _, high = item.partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    except (OSError, ValueError):
        return set()
    return ports


def exposed_ports(ports: range, proc: Path = PROC) -> list[int]:
    """Those of ``ports`` an outgoing connection may take: in the ephemeral range and
    not reserved. Empty where ``/proc`` has no range to read.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "ip_local_port_range").write_text("32768\\t60999\\n")
    >>> exposed_ports(range(6066, 6069), d)
    []
    >>> exposed_ports(range(32767, 32770), d)
    [32768, 32769]
    >>> _ = (d / "ip_local_reserved_ports").write_text("32768\\n")
    >>> exposed_ports(range(32767, 32770), d)
    [32769]

    """
    if not (proc / "ip_local_port_range").exists():
        return []
    low, high = ephemeral_ports(proc)
    reserved = reserved_ports(proc)
    return [p for p in ports if low <= p <= high and p not in reserved]
