"""sandbox-service: turn host systemd services into application containers built from systemd's own parts."""

__version__ = "0.1.0"
