"""The gateway: HTTP API, stores, caches and the clock, around the pure trust core.

Only this package (and ``mocks``) performs I/O.
"""

from gateway.settings import Settings, SettingsError, load_settings
from gateway.web.app import create_app

__all__ = ["Settings", "SettingsError", "create_app", "load_settings"]
