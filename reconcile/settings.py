"""Settings: the only reader of environment variables and recon.toml.

Precedence, highest first: command-line flags, `RECON_*` environment variables, recon.toml
(path from `--config` / `RECON_CONFIG`, else `./recon.toml` when present), defaults.
Settings are read once at the edge (the CLI) and passed down as plain values.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from contextvars import ContextVar
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from reconcile import redact
from reconcile.errors import ConfigError

DEFAULT_SUCCESS_VALUES = ["PROCESSED", "SUCCESS", "SUCCEEDED", "OK", "COMPLETED"]
DEFAULT_FAILURE_VALUES = ["FAILED", "ERROR", "REJECTED"]
SUPPORTED_ENCODINGS = {"utf-8", "utf-16", "latin-1"}
_ENCODING_ALIASES = {
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "utf16": "utf-16",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

MIN_DRAIN_INTERVAL = 0.05  # seconds; the server drains the spool this often at most

_toml_path: ContextVar[Path | None] = ContextVar("recon_toml_path", default=None)


def parse_duration(value: Any) -> float:
    """`90s`, `15m`, `2h`, `1d` or a plain number of seconds -> seconds (never negative)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"expected a duration of 0 or more, such as 30s, 15m, 2h or 1d; got {value!r}"
            )
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30s, 15m, 2h or 1d; got {_shown(value)!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _shown(value: Any) -> str:
    """A refused value as an error message may quote it: masked, and cut short."""
    text = redact.mask_pans(str(value)) or ""
    return text if len(text) <= 60 else text[:57] + "..."


def _no_card(value: str, what: str) -> str:
    """Refuse a configured name or value that holds a card number: names are identifiers,
    stored and shown everywhere (tables, exports, alerts), so none may be one."""
    if redact.mask_pans(value) != value:
        raise ValueError(f"{what} {_shown(value)!r} holds a card number; choose a name without one")
    return value


def parse_now(value: Any) -> datetime:
    """An ISO 8601 instant; a value without an offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 time such as 2026-11-24T09:00:00+00:00"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class SourceConfig(BaseModel):
    """One upstream process under `[sources.NAME]`: how to read its files and what they mean."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    encoding: str = "utf-8"
    delimiter: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    success_values: list[str] = Field(default_factory=lambda: list(DEFAULT_SUCCESS_VALUES))
    failure_values: list[str] = Field(default_factory=lambda: list(DEFAULT_FAILURE_VALUES))
    timezone: str = "UTC"
    cutoff: time = time(0, 0)
    sensitive_columns: list[str] = Field(default_factory=list)
    card_columns: list[str] = Field(default_factory=list)
    # Issue 13: an id column's format, declared (column name -> regular expression matching a
    # whole value, e.g. txn_id = "CG[0-9]{12}"): values that match are ids, never masked; the
    # column is judged as an id column (`redact.mask_id`) otherwise.
    id_formats: dict[str, str] = Field(default_factory=dict)
    # How far a processed amount may differ from the expected one and still match: the larger
    # of an absolute amount and a percentage of the expected amount. Default: exact.
    amount_tolerance: Decimal = Decimal(0)
    amount_tolerance_percent: Decimal = Decimal(0)
    # How the source writes numbers and times (issue 13, item 10): a decimal comma
    # ("1.234,56": decimal_separator = ",", thousands_separator = "."), and timestamps or dates
    # in another layout than ISO 8601 (strptime formats, e.g. "%m/%d/%Y %H:%M:%S").
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal[",", ".", " ", "'", ""] | None = None
    timestamp_format: str | None = None
    date_format: str | None = None

    @field_validator("timestamp_format", "date_format")
    @classmethod
    def _strptime_format(cls, value: str | None) -> str | None:
        return _check_time_format(value) if value is not None else None

    @model_validator(mode="after")
    def _separators_differ(self) -> SourceConfig:
        if self.thousands_separator == self.decimal_separator:
            raise ValueError(
                f"decimal_separator and thousands_separator are both "
                f"{self.decimal_separator!r}; set thousands_separator to another character "
                f'(for 1.234,56: decimal_separator = ",", thousands_separator = ".")'
            )
        return self

    @property
    def thousands(self) -> str:
        """The thousands separator in effect: as set, else "," beside a decimal point and none
        beside a decimal comma."""
        if self.thousands_separator is not None:
            return self.thousands_separator
        return "," if self.decimal_separator == "." else ""

    @field_validator("amount_tolerance", "amount_tolerance_percent", mode="before")
    @classmethod
    def _non_negative_decimal(cls, value: Any) -> Decimal:
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            number = Decimal("NaN")
        if not number.is_finite() or number < 0:
            raise ValueError('expected a number >= 0, such as "0.01" (absolute) or 0.5 (percent)')
        return number

    @field_validator("id_formats")
    @classmethod
    def _id_formats(cls, value: dict[str, str]) -> dict[str, str]:
        formats = {}
        for column, pattern in value.items():
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{column}: not a regular expression ({exc})") from None
            if re.search(r"\(\?<?[=!]|\\[1-9]", pattern):  # DuckDB's RE2 has neither
                raise ValueError(f"{column}: lookarounds and back-references are not supported")
            # A format that takes a 16-digit card, or cards of several lengths, or nothing at
            # all, describes card numbers as well as ids: it would let cards through unmasked.
            cards = [c for c in redact.TEST_CARDS if compiled.fullmatch(c)]
            if (
                compiled.fullmatch("")
                or len({len(c) for c in cards}) > 1
                or any(len(c) == 16 for c in cards)
            ):
                shown = cards[0] if cards else "an empty value"
                raise ValueError(
                    f"{column}: the format also matches card numbers ({shown}); "
                    "describe the ids themselves, e.g. CG[0-9]{12}"
                )
            formats[redact.normalise_name(column)] = pattern
        return formats

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        name = _ENCODING_ALIASES.get(value.strip().lower(), value.strip().lower())
        if name not in SUPPORTED_ENCODINGS:
            raise ValueError(
                f"expected one of {', '.join(sorted(SUPPORTED_ENCODINGS))} "
                f"(convert other encodings to UTF-8 first, e.g. with iconv)"
            )
        return name

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone name such as Europe/London") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError("expected a single character such as ',' or ';'")
        return value

    @field_validator("columns")
    @classmethod
    def _canonical_keys(cls, value: dict[str, str]) -> dict[str, str]:
        from reconcile.canonical import CANONICAL_COLUMNS

        unknown = sorted(set(value) - CANONICAL_COLUMNS)
        if unknown:
            raise ValueError(
                f"unknown canonical column(s) {', '.join(_shown(u) for u in unknown)}; map "
                f'canonical names to your file\'s names, e.g. txn_id = "TransactionID" '
                f"(canonical: {', '.join(sorted(CANONICAL_COLUMNS))})"
            )
        for canonical, column in sorted(value.items()):
            _no_card(column, f"the column mapped to {canonical},")
            if redact.is_never_stored(column):
                raise ValueError(
                    f"{canonical} is mapped to {_shown(column)!r}, a card security column "
                    "(CVV, PIN or track data) that is never stored; map it to the column that "
                    "holds the " + canonical
                )
        return value

    @field_validator(
        "success_values", "failure_values", "sensitive_columns", "card_columns", mode="after"
    )
    @classmethod
    def _no_card_in_names(cls, value: list[str]) -> list[str]:
        for item in value:
            _no_card(item, "the value")
        return value


_FORMAT_DIRECTIVES = set("aAbBcdfHIjmMpSuUwWxXyYzZ%")


def _check_time_format(value: str) -> str:
    """A strptime format (DuckDB's, which Python's shares): known directives only, and a year,
    a month and a day, so that every value it reads is a whole date."""
    directives = re.findall(r"%-?(.)", value)
    unknown = sorted({d for d in directives if d not in _FORMAT_DIRECTIVES})
    if unknown:
        raise ValueError(
            f"unknown directive(s) {', '.join('%' + d for d in unknown)} in {_shown(value)!r}; "
            'write a strptime format such as "%m/%d/%Y %H:%M:%S" or "%d.%m.%Y"'
        )
    if not (
        {"Y", "y"} & set(directives) and {"m", "b", "B"} & set(directives) and "d" in directives
    ):
        raise ValueError(
            f"{_shown(value)!r} does not give a year, a month and a day (%Y, %m, %d); write a "
            'strptime format such as "%m/%d/%Y %H:%M:%S" or "%d.%m.%Y"'
        )
    sample = datetime(2026, 3, 23, 14, 5, 6, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(value.replace("%-", "%")), value.replace("%-", "%"))
    except (ValueError, re.error):
        raise ValueError(
            f"{_shown(value)!r} cannot read back what it writes (a directive twice?); write a "
            'strptime format such as "%m/%d/%Y %H:%M:%S" or "%d.%m.%Y"'
        ) from None
    return value


class NotifyTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: SecretStr
    tags: list[str] = Field(default_factory=list)
    # Escalation: after this many failed attempts, the alert also goes to the fallback alias.
    fallback: str | None = None
    escalate_after: int = Field(default=3, ge=1)

    @field_validator("tags", mode="after")
    @classmethod
    def _no_card_in_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            _no_card(tag, "the tag")
        return value

    @field_validator("fallback", mode="after")
    @classmethod
    def _no_card_in_fallback(cls, value: str | None) -> str | None:
        return _no_card(value, "the fallback alias") if value is not None else None


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: dict[str, NotifyTarget] = Field(default_factory=dict)
    # An apprise configuration file (YAML or TEXT, with its own tags); each URL in it becomes a
    # target named "<file name>#<n>".
    config_file: Path | None = None

    @field_validator("targets", mode="after")
    @classmethod
    def _no_card_in_aliases(cls, value: dict[str, NotifyTarget]) -> dict[str, NotifyTarget]:
        for alias in value:
            _no_card(alias, "the target alias")
        return value

    @field_validator("config_file", mode="after")
    @classmethod
    def _no_card_in_file_name(cls, value: Path | None) -> Path | None:
        if value is not None:  # its name is part of each of its targets' alias
            _no_card(value.name, "the file name")
        return value


class MailboxConfig(BaseModel):
    """An IMAP mailbox under `[mailboxes.ALIAS]`, read (never changed) by `reconcile.mailbox`.

    The password is a secret: keep it out of recon.toml, in `RECON_MAILBOXES__ALIAS__PASSWORD`
    (alias in upper case) or in a file named by `password_file`.
    """

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 993 for tls, else 143
    security: Literal["tls", "starttls", "none"] = "tls"
    user: str
    password: SecretStr | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    ca_file: Path | None = None  # PEM bundle of a private CA, instead of the system's CAs
    timeout: float = 30.0  # seconds allowed for each network step

    @field_validator("host", "user")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return _no_card(value.strip(), "the value")

    @field_validator("folder")
    @classmethod
    def _ascii_folder(cls, value: str) -> str:
        # imaplib sends names as they are; a non-ASCII name needs the server's modified UTF-7.
        if not value or not value.isascii():
            raise ValueError(
                "expected the folder's IMAP name in ASCII, such as INBOX or Reports/Daily "
                "(write non-ASCII names in modified UTF-7, as the server lists them)"
            )
        return _no_card(value, "the folder")

    @field_validator("timeout", mode="before")
    @classmethod
    def _positive_duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("expected a duration above zero, such as 30s")
        return seconds

    @model_validator(mode="after")
    def _one_password(self) -> MailboxConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        return self

    @property
    def imap_port(self) -> int:
        """The configured port, else the usual one for the security mode."""
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143

    def secret(self) -> str | None:
        """The password, from the setting or read from `password_file` on each use (so that a
        rotated file is picked up); None when neither is set."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"password_file {self.password_file} cannot be read ({reason}); check the path "
                f"and that this user may read it"
            ) from None


class ReportConfig(BaseModel):
    """`[report]`: what the daily report (`recon report send|preview`) carries, and its caps.

    Mail servers refuse large messages and openpyxl writes about 7,000 rows a second, so a large
    day's files are left out of the report (the body names each, with why and the command that
    writes it). Environment: RECON_REPORT__BODY_ROWS, RECON_REPORT__XLSX_MAX_ROWS,
    RECON_REPORT__ATTACH_MAX_BYTES."""

    model_config = ConfigDict(extra="forbid")

    # Failed records listed in the report's text and HTML (the rest: in the attachments).
    body_rows: int = Field(default=25, ge=0, le=1000)
    # The XLSX is attached only for a list of at most this many records (0: never).
    xlsx_max_rows: int = Field(default=20_000, ge=0, le=1_000_000)
    # The CSV is attached only up to this many bytes (0: never); the XLSX too.
    attach_max_bytes: int = Field(default=20_000_000, ge=0)


class Settings(BaseSettings):
    """Everything a command may need, validated once."""

    model_config = SettingsConfigDict(
        env_prefix="RECON_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    db: Path = Path("recon.duckdb")
    now: datetime | None = None
    lock_timeout: float = 30.0
    # How much memory the store's engine (DuckDB) may use per process, e.g. "1GB", "512MB",
    # "4GiB" (RECON_MEMORY_LIMIT). Past it, large work (reconciling millions of records) spills
    # to a private folder beside the database (`<db>.tmp`, mode 0700, removed when empty) instead
    # of growing; a larger limit is faster on a machine that has the memory to spare.
    memory_limit: str = "1GB"
    pan_key: SecretStr | None = None
    audit_key: SecretStr | None = None  # HMAC key of the audit chain; never in the database
    audit_key_file: Path | None = None  # or a file holding it (keep it 0600, outside the data)
    audit_anchor: Path | None = None  # the chain's head, appended outside the database
    base_url: str | None = None
    log_level: str | None = None  # JSON log lines on stderr at this level (e.g. INFO, DEBUG)
    log_file: Path | None = None  # JSON log lines appended here (0600)
    log_file_level: str = "INFO"
    export_mode: str = "600"  # file mode of exports and failure lists, e.g. "640" to share
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    mailboxes: dict[str, MailboxConfig] = Field(default_factory=dict)  # by alias
    report: ReportConfig = Field(default_factory=ReportConfig)  # the daily report's caps
    # Watching the watchdog: every `recon watch` tick fetches this URL (healthchecks-style), so
    # an outside service notices when the watchdog itself stops.
    watchdog_ping_url: SecretStr | None = None
    notify_timeout: float = 10.0  # seconds apprise may take per delivery
    spool_dir: Path | None = None  # where `recon serve` spools pings; default <db>.spool
    spool_drain_interval: float = 1.0  # seconds between drains of the spool into the store
    ping_rate_limit: int = Field(default=600, ge=1)  # pings a minute per monitor over HTTP
    # What the configuration file itself says (None: no file was read), for the configuration
    # history: it versions what a person wrote in recon.toml, not the environment a process
    # happened to run in.
    _file_values: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("notify_timeout", mode="before")
    @classmethod
    def _parse_notify_timeout(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError(f"expected a duration above zero, such as 10s; got {_shown(value)!r}")
        return seconds

    @field_validator("spool_drain_interval", mode="before")
    @classmethod
    def _parse_drain_interval(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < MIN_DRAIN_INTERVAL:
            raise ValueError(
                f"expected at least {MIN_DRAIN_INTERVAL * 1000:.0f}ms, such as 1s (a shorter "
                f"interval keeps the server busy draining); got {_shown(value)!r}"
            )
        return seconds

    @field_validator("sources", "mailboxes", mode="after")
    @classmethod
    def _no_card_in_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            _no_card(name, "the name")
        return value

    @field_validator("base_url", mode="after")
    @classmethod
    def _no_card_in_url(cls, value: str | None) -> str | None:
        return _no_card(value, "the URL") if value is not None else None

    @field_validator("now", mode="before")
    @classmethod
    def _parse_now(cls, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        return parse_now(value)

    @field_validator("memory_limit", mode="after")
    @classmethod
    def _parse_memory_limit(cls, value: str) -> str:
        text = value.strip()
        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text, re.IGNORECASE):
            raise ValueError(
                f"expected an amount of memory such as 1GB or 512MB; got {_shown(value)!r}"
            )
        return text

    @field_validator("lock_timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> float:
        return parse_duration(value)  # 0: do not wait for another process's lock

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _toml_path.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def file_values(self) -> dict[str, Any] | None:
        """recon.toml as read (before the environment and flags override it); None when no
        configuration file was read."""
        return self._file_values

    def current_time(self) -> datetime:
        """`--now` / `RECON_NOW` when given (tests, replays), else the clock; always aware UTC."""
        return self.now or datetime.now(UTC)

    def source(self, name: str) -> SourceConfig:
        """The configuration of a source; one not in recon.toml reads canonical files."""
        return self.sources.get(name) or SourceConfig()

    @field_validator("export_mode")
    @classmethod
    def _octal_mode(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError(
                f"expected an octal file mode such as 600 or 640; got {_shown(value)!r}"
            )
        if int(value, 8) & 0o007:
            raise ValueError(
                f"{value} lets every user of the machine read or write exports, which hold "
                "failed transactions; use 600 (owner only) or 640 (owner and group)"
            )
        return value

    @field_validator("log_level", "log_file_level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return value.upper() if value else value

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log filter can replace it wherever it shows up."""
        found = [
            secret.get_secret_value()
            for secret in (self.pan_key, self.audit_key, self.watchdog_ping_url)
            if secret is not None
        ]
        found += [target.url.get_secret_value() for target in self.notify.targets.values()]
        found += [m.password.get_secret_value() for m in self.mailboxes.values() if m.password]
        return found

    def audit_key_bytes(self) -> bytes | None:
        """The audit chain's key: RECON_AUDIT_KEY, else the file `audit_key_file` names."""
        if self.audit_key:
            return self.audit_key.get_secret_value().encode()
        if self.audit_key_file:
            try:
                return self.audit_key_file.read_bytes().strip() or None
            except OSError as exc:
                raise ConfigError(
                    f"audit_key_file {self.audit_key_file}: {exc.strerror}; "
                    "make it readable by this user, or set RECON_AUDIT_KEY"
                ) from None
        return None

    def anchor_path(self) -> Path:
        """Where the chain's head is anchored: `audit_anchor`, else `<db>.anchor` beside it."""
        return self.audit_anchor or self.db.with_name(self.db.name + ".anchor")

    def pan_key_bytes(self) -> bytes:
        """The key of card fingerprints: `pan_key`, else the store's own key, generated on first
        use into `<db>.pankey` (0600, outside the database): fingerprints are always keyed."""
        if self.pan_key:
            return self.pan_key.get_secret_value().encode()
        from reconcile import pankey

        return pankey.load_or_create(self.db)


def config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The recon.toml to read: `--config`, else `RECON_CONFIG`, else `./recon.toml` if present."""
    chosen = explicit or os.environ.get("RECON_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; pass an existing recon.toml with --config "
                f"or RECON_CONFIG, or leave both unset"
            )
        return path
    default = Path("recon.toml")
    return default if default.is_file() else None


def _describe(error: Any, toml_file: Path | None) -> str:
    """One refused setting: where (masked: a source or alias name is a key here), and why."""
    loc = [_shown(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{key}': check its spelling against README.md (Settings)"
    where = f"recon.toml key '{key}'" if toml_file else f"setting '{key}'"
    env_name = "RECON_" + "__".join(loc).upper()
    message = redact.mask_pans(str(error["msg"]).removeprefix("Value error, ")) or ""
    return f"invalid {where} (env {env_name}): {message}"


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read and validate all settings; raise ConfigError naming each bad key and its form."""
    toml_file = config_path(config)
    file_values: dict[str, Any] | None = None
    if toml_file is not None:
        try:
            file_values = tomllib.loads(toml_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{toml_file} is not valid TOML: {exc}") from None
    given = {key: value for key, value in overrides.items() if value is not None}
    token = _toml_path.set(toml_file)
    try:
        settings = Settings(**given)
        settings._file_values = file_values
        redact.remember_secrets(settings.secret_values())  # masked wherever they show up
        return settings
    except ValidationError as exc:
        problems = "\n  ".join(_describe(error, toml_file) for error in exc.errors())
        origin = f" (config file {toml_file})" if toml_file else ""
        raise ConfigError(f"invalid settings{origin}:\n  {problems}") from None
    finally:
        _toml_path.reset(token)


def filed_settings(settings: Settings, names: tuple[str, ...]) -> dict[str, Any]:
    """The named top-level settings as recon.toml alone sets them, validated (`"5s"` -> 5.0),
    defaults where it says nothing: what the environment and flags give is left out. A value
    the environment overrides is not validated on load; if invalid, it is kept as written.

    Each value goes through the validator Settings already has (as an assignment to a copy),
    so no second model is built: every command that reads a recon.toml asks for these."""
    raw = settings.file_values() or {}
    probe, validator = settings.model_copy(), Settings.__pydantic_validator__
    found: dict[str, Any] = {}
    for name in [n for n in Settings.model_fields if n in names]:  # in the model's order
        given = name in raw
        value = (
            raw[name]
            if given
            else Settings.model_fields[name].get_default(call_default_factory=True)
        )
        try:
            validator.validate_assignment(probe, name, value)
        except ValidationError:
            if not given:
                raise
            found[name] = str(raw[name])
            continue
        found[name] = probe.model_dump(mode="json", include={name})[name]
    return found
