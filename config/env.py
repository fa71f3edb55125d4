"""The one place that reads the process environment (and an optional `.env` file).

Settings modules import `env` and `BASE_DIR` from here; nothing else reads `os.environ` for
configuration, so every knob is listed in `config/settings/` and documented in the README.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A `.env` file is a convenience for local runs; real deployments set the environment.
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)


def env_first(*names: str, default: str = "") -> str:
    """The value of the first of `names` that is set and non-empty (for documented aliases)."""
    for name in names:
        value = env.str(name, default="")
        if value:
            return value
    return default
