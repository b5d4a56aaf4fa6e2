"""The REST API: ``create_app(settings)`` builds the aiohttp application."""

from control_plane.api.app import create_app

__all__ = ["create_app"]
