"""Settings: every knob of a command declared once, as a field of ``Settings`` with its
``Opt`` (flag, ``CONVIRZA_*`` variable, job-file key, help), merged flag > environment > job
file > default, and checked before anything starts. The environment is read here and nowhere
else; the small files a user names (token, columns, job) are read warily here too."""

from .resolve import DECLARED, Resolved, Settings, Source, env_name, resolve

__all__ = ["DECLARED", "Resolved", "Settings", "Source", "env_name", "resolve"]
