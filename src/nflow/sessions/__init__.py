"""Client sessions (``nflow_form``, ``auth-session``…): sealed cookies or Redis.

How they differ from the Go runtime's, and why: docs/compat.md, Sessions and cookies.
"""

from __future__ import annotations

from nflow.sessions._base import LoadedSessions, SessionBackend
from nflow.sessions._cookie import CookieSessions
from nflow.sessions._redis import RedisSessions

__all__ = ["CookieSessions", "LoadedSessions", "RedisSessions", "SessionBackend"]
