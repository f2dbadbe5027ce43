"""The sandbox: a local stand-in for Convirza's API. It imports nothing from the importer."""

from .app import STATE, STORE, Faults, SandboxConfig, make_app, serve_forever, start
from .store import CallStore, StoredCall

__all__ = ["STATE", "STORE", "CallStore", "Faults", "SandboxConfig", "StoredCall", "make_app",
           "serve_forever", "start"]
