"""config.toml: the Go runtime's files keep working, and every mistake is named precisely."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from nflow.config import (
    RESTART_REQUIRED_KEYS,
    Config,
    changed_keys,
    load_config,
    redacted,
    restart_required_keys,
    with_overrides,
)
from nflow.errors import ConfigError

# The Go runtime's sample config.toml, with the sections the sample left out filled in with
# every key its code knew, including [security] and its tables.
GO_SAMPLE = r"""
[pg_session]
url = ""

[redis]
host = ""
password = ""

[database_nflow]
driver = "sqlite3"
dsn = "../nflow/app/app.sqlite"
#driver = "postgres"
#dsn = "postgres://postgres:secret@localhost:5432/nflow?sslmode=disable"
query = "SELECT name,query FROM queries"

[env]
scim_base = "https://localhost:8443"
openid_base = "https://localhost:8443"

[url]
url_base = "http://localhost:8080"

[twilio]
enable = false
account_sid = ""
auth_token = ""
verify_service_id = ""

[mail]
smtp = "smtp.example.com"
port = "587"
from = "noreply@example.com"
password = ""

[database]
url = ""
driver = ""
init = ""

[mongo]
url = ""

[plugin]
plugins = []

[https_engine]
enable = false
cert = ""
key = ""
address = ":8443"
description = "engine"
httpbasic = false

[https_designer]
enable = false
cert = ""
key = ""
address = ":9443"
description = "designer"
httpbasic = false

[vm_pool]
max_size = 200              # Maximum VMs in pool
preload_size = 100          # VMs to create at startup
idle_timeout = 10
cleanup_interval = 5
enable_metrics = true
max_memory_mb = 128
max_execution_seconds = 30
max_operations = 1000000000
enable_filesystem = false
enable_network = false
enable_process = false

[tracker]
enabled = false
workers = 4
batch_size = 100
flush_interval = 250
channel_buffer = 100000
verbose_logging = false
stats_interval = 300

[debug]
enabled = false
auth_token = ""
allowed_ips = ""
enable_pprof = false

[monitor]
enabled = true
health_check_path = "/health"
metrics_path = "/metrics"
enable_detailed_metrics = false
metrics_port = ""

[rate_limit]
enabled = false
ip_rate_limit = 100
ip_window_minutes = 1
ip_burst_size = 10
backend = "memory"
cleanup_interval = 10
retry_after_header = true
error_message = "Rate limit exceeded. Please try again later."
excluded_ips = ""
excluded_paths = "/health,/metrics"

[security]
enable_static_analysis = true
block_on_high_severity = true
log_security_warnings = true
cache_analysis_results = true
cache_ttl_minutes = 5
allowed_patterns = []
enable_encryption = true
encryption_key = "an-encryption-key-for-the-sample"
encrypt_sensitive_data = true
encrypt_in_place = true
always_encrypt_fields = ["password", "token", "secret", "api_key"]
sensitive_patterns = ["email", "phone", "ssn", "credit_card", "api_key", "jwt"]
enable_log_sanitization = true
log_masking_char = "*"
log_preserve_length = false
log_show_type = true

[security.custom_patterns]
employee_id = "EMP\\d{6}"
account_number = "ACC-\\d{4}-\\d{4}-\\d{4}"

[security.log_custom_patterns]
session_id = "sess_[a-zA-Z0-9]{32}"
internal_id = "INT-\\d{8}"
"""

SECRET_SESSION = "s" * 40


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None = None, /, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    return caught.value


# --- the Go sample and defaults --------------------------------------------------------------


def test_go_sample_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GO_SAMPLE), environ={})

    assert config.database_nflow.dsn == "../nflow/app/app.sqlite"
    assert config.database_url == "sqlite+aiosqlite:///../nflow/app/app.sqlite"
    assert config.env == {
        "scim_base": "https://localhost:8443",
        "openid_base": "https://localhost:8443",
    }
    assert config.vm_pool.max_size == 200
    assert config.vm_pool.effective_preload_size == 100
    assert config.vm_pool.max_operations == 1_000_000_000
    assert config.mail.port == 587  # Go declared it a string
    assert config.mail.from_ == "noreply@example.com"
    assert config.monitor.metrics_port == 0  # "" meant "same port"
    assert config.debug.allowed_ips == ()
    assert config.rate_limit.excluded_paths == ("/health", "/metrics")
    assert config.security.custom_patterns == {
        "employee_id": r"EMP\d{6}",
        "account_number": r"ACC-\d{4}-\d{4}-\d{4}",
    }
    assert config.security.log_custom_patterns["session_id"] == "sess_[a-zA-Z0-9]{32}"
    assert config.https_designer.address == ":9443"


def test_go_rate_limit_sample_variant_loads(tmp_path: Path) -> None:
    text = GO_SAMPLE.replace("[rate_limit]\nenabled = false", "[rate_limit]\nenabled = true")
    text = text.replace("ip_rate_limit = 100", "ip_rate_limit = 10")
    config = load_config(write(tmp_path, text), environ={})
    assert config.rate_limit.enabled is True
    assert config.rate_limit.ip_rate_limit == 10
    assert config.rate_limit.ip_burst_size == 10


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})

    assert config == Config()
    assert config.database_nflow.driver == "sqlite3"
    assert config.database_url == "sqlite+aiosqlite:///nflow.db"
    assert config.database_nflow.query == "SELECT name,query FROM queries"
    assert config.monitor.enabled is True  # Go: off when the section was missing
    assert config.tracker.workers == 4  # Go: 70
    assert config.vm_pool.max_size == 50
    assert config.vm_pool.effective_preload_size == 25
    assert config.vm_pool.max_memory_mb == 128
    assert config.vm_pool.max_execution_seconds == 30
    assert config.mail.port == 25
    assert config.limits.max_steps == 1000
    assert config.limits.request_timeout_seconds == 30
    assert config.limits.step_timeout_seconds == 30
    assert config.limits.max_body_bytes == 10 * 1024 * 1024
    assert config.limits.max_response_bytes == 10 * 1024 * 1024
    assert config.limits.max_stack_kb == 1024
    assert config.limits.max_host_calls == 100_000
    assert config.limits.sleep_max_ms == 5000
    assert config.session.backend == "cookie"
    assert config.session.max_age_seconds == 30 * 24 * 3600
    assert (config.server.host, config.server.port, config.server.workers) == ("127.0.0.1", 8080, 0)
    assert config.server.mode == "development"
    assert config.server.effective_workers >= 1
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    assert config.redis.prefix == "nflow:"
    assert config.effective_step_timeout_seconds == 30


def test_no_path_reads_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "this is not toml")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}) == Config()


def test_config_is_frozen() -> None:
    config = load_config(environ={})
    with pytest.raises(ValidationError):
        config.vm_pool.max_size = 3
    assert isinstance(config.security.always_encrypt_fields, tuple)


def test_stricter_step_timeout_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[vm_pool]\nmax_execution_seconds = 5\n[limits]\nstep_timeout_seconds = 8"
    )
    assert load_config(path, environ={}).effective_step_timeout_seconds == 5


# --- keys --------------------------------------------------------------------------------------


def test_keys_are_case_insensitive(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [VM_Pool]
        Max_Size = 10
        [Database_NFLOW]
        DSN = "other.db"
        Driver = "SQLite3"
        [https_engine]
        HTTPBasic = true
        [Env]
        Mixed_Case = "kept"
        """,
    )
    config = load_config(path, environ={})
    assert config.vm_pool.max_size == 10
    assert config.database_nflow.dsn == "other.db"
    assert config.database_nflow.driver == "sqlite3"
    assert config.https_engine.httpbasic is True
    assert config.env == {"Mixed_Case": "kept"}  # names inside [env] are the script's, verbatim


def test_same_key_twice_in_different_case(tmp_path: Path) -> None:
    path = write(tmp_path, "[vm_pool]\nmax_size = 1\nMAX_SIZE = 2\n")
    error = load_error(path)
    assert str(error) == f"{path}: vm_pool.max_size: given twice (in different case)"


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[vm_pool]\nmax_sise = 10\n")
    error = load_error(path)
    assert str(error) == f"{path}: unknown key vm_pool.max_sise (did you mean max_size?)"
    assert error.key == "vm_pool.max_sise"


def test_unknown_section_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[rate_limits]\nenabled = true\n")
    assert (
        str(load_error(path)) == f"{path}: unknown section rate_limits (did you mean rate_limit?)"
    )


def test_readme_mail_keys_get_the_real_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[mail]\nsmtp_host = "smtp.example.com"\nuse_tls = true\n')
    message = str(load_error(path))
    assert f"{path}: unknown key mail.smtp_host (did you mean smtp?)" in message
    assert f"{path}: unknown key mail.use_tls (did you mean tls?)" in message


def test_go_named_query_keys_are_explained(tmp_path: Path) -> None:
    path = write(tmp_path, '[database_nflow]\nQueryGetUser = "SELECT 1"\n')
    assert "read from the queries table" in str(load_error(path))


# --- types and values ------------------------------------------------------------------------


def test_wrong_type_names_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, '[vm_pool]\nmax_size = "lots"\n')
    error = load_error(path)
    assert str(error) == f'{path}: vm_pool.max_size: expected an integer, got "lots"'
    assert error.key == "vm_pool.max_size"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[debug]\nenabled = 1", "debug.enabled: expected true or false, got 1"),
        ("[plugin]\nplugins = 5", "plugin.plugins: expected a list of strings, got 5"),
        ("[plugin]\nplugins = [1]", "plugin.plugins[0]: expected a string, got 1"),
        ("[env]\nport = 8080", "env.port: expected a string, got 8080"),
        ("vm_pool = 3", "vm_pool: expected a table, got 3"),
        ("[limits]\nmax_steps = 0", "limits.max_steps: must be at least 1, got 0"),
        ("[limits]\nrequest_timeout_seconds = 0.0", "must be greater than 0, got 0.0"),
        ("[limits]\nmax_steps = 2.5", "limits.max_steps: expected an integer, got 2.5"),
        (
            '[database_nflow]\ndriver = "mysql"',
            'database_nflow.driver: expected one of "sqlite3", "sqlite" or "postgres", got "mysql"',
        ),
        (
            '[database_nflow]\ndsn = "postgresql://u@127.0.0.1/nflow"',
            'got postgresql:// (for PostgreSQL set driver = "postgres" beside it)',
        ),
        ('[server]\nmode = "staging"', 'server.mode: expected one of "development" or'),
        ("[server]\nport = 70000", "server.port: must be at most 65535, got 70000"),
        ('[debug]\nallowed_ips = "10.0.0.0/8,nope"', '"nope" is not an IP address or a CIDR'),
        ('[rate_limit]\nexcluded_paths = ["health"]', "expected a path starting with /"),
        ('[monitor]\nmetrics_path = "metrics"', "monitor.metrics_path: expected a path starting"),
        ("[security.custom_patterns]\nbad = '(('", "security.custom_patterns.bad: invalid regular"),
        ('[security]\nsensitive_patterns = ["iban"]', 'unknown pattern "iban"'),
        ('[security]\nlog_masking_char = "**"', "security.log_masking_char: should have at most 1"),
        ("[vm_pool]\nmax_size = 4\npreload_size = 5", "must not exceed vm_pool.max_size (4)"),
        ("[vm_pool]\nenable_network = true", "vm_pool.enable_network: scripts never get direct"),
        ("[mail]\ntls = true\nstarttls = true", "mail.tls: choose tls"),
        ('[mail]\nport = "smtp"', 'mail.port: expected an integer, got "smtp"'),
        ("[twilio]\nenable = true", "twilio.account_sid: required when twilio.enable is true"),
        ("[https_engine]\nenable = true", "https_engine.cert: required when enable is true"),
    ],
)
def test_bad_values_are_explained(tmp_path: Path, toml: str, expected: str) -> None:
    path = write(tmp_path, toml)
    message = str(load_error(path))
    assert expected in message
    assert str(path) in message


def test_lists_accept_go_comma_strings_and_arrays(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[debug]\nallowed_ips = "127.0.0.1, 192.168.1.0/24"\n'
        '[rate_limit]\nexcluded_ips = ["10.0.0.0/8", "::1"]\n',
    )
    config = load_config(path, environ={})
    assert config.debug.allowed_ips == ("127.0.0.1", "192.168.1.0/24")
    assert config.rate_limit.excluded_ips == ("10.0.0.0/8", "::1")


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[vm_pool]\nmax_size = "lots"\nmax_sise = 3\n'
        "[rate_limit]\nip_window_minutes = 0\n"
        "[tracker]\nworkers = true\n",
    )
    error = load_error(path, NFLOW_SERVER__PORT="http")
    lines = str(error).splitlines()

    assert lines[0] == "5 configuration problems:"
    body = [line.strip() for line in lines[1:]]
    assert f"{path}: unknown key vm_pool.max_sise (did you mean max_size?)" in body
    assert f'{path}: vm_pool.max_size: expected an integer, got "lots"' in body
    assert f"{path}: tracker.workers: expected an integer, got true" in body
    assert 'NFLOW_SERVER__PORT: expected an integer, got "http"' in body
    assert any(line.startswith(f"{path}: rate_limit.ip_window_minutes:") for line in body)


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[vm_pool]\nmax_size = 10\nidle_timeout = = 3\n")
    message = str(load_error(path))
    assert message.startswith(f"{path}: line 3, column 16: invalid TOML: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert str(load_error(path)).startswith(f"{path}: cannot read the file")


def test_rate_limit_window_zero_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[rate_limit]\nip_window_minutes = 0\n")
    error = load_error(path)
    assert str(error).startswith(
        f"{path}: rate_limit.ip_window_minutes: must be greater than 0, got 0"
    )
    assert error.key == "rate_limit.ip_window_minutes"
    env_error = load_error(NFLOW_RATE_LIMIT__IP_WINDOW_MINUTES="0")
    assert str(env_error).startswith("NFLOW_RATE_LIMIT__IP_WINDOW_MINUTES: must be greater than 0")


def test_rate_limit_zero_requests_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[rate_limit]\nip_rate_limit = 0\n")
    assert "rate_limit.ip_rate_limit: must be greater than 0" in str(load_error(path))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"NFLOW_SESSION__BACKEND": "redis"}, 'NFLOW_SESSION__BACKEND: "redis" needs redis.host'),
        (
            {"NFLOW_RATE_LIMIT__ENABLED": "true", "NFLOW_RATE_LIMIT__BACKEND": "redis"},
            'NFLOW_RATE_LIMIT__BACKEND: "redis" needs redis.host to be set',
        ),
        ({"NFLOW_SERVER__MODE": "production"}, "session.secret: required for cookie sessions"),
        (
            {
                "NFLOW_SERVER__MODE": "production",
                "NFLOW_SESSION__SECRET": SECRET_SESSION,
                "NFLOW_DEBUG__ENABLED": "true",
            },
            "debug.auth_token: required when debug.enabled is true in production mode",
        ),
        ({"NFLOW_MONITOR__METRICS_PORT": "8080"}, "must differ from server.port (8080)"),
        (
            {"NFLOW_SECURITY__ENABLE_ENCRYPTION": "true"},
            "security.encryption_key: required when security.enable_encryption is true",
        ),
        ({"NFLOW_DATABASE_NFLOW__DRIVER": "postgres"}, "expected a PostgreSQL DSN"),
    ],
)
def test_keys_that_depend_on_each_other(environ: dict[str, str], expected: str) -> None:
    assert expected in str(load_error(**environ))


def test_production_mode_with_secret_loads() -> None:
    config = load_config(
        environ={"NFLOW_SERVER__MODE": "Production", "NFLOW_SESSION__SECRET": SECRET_SESSION}
    )
    assert config.server.mode == "production"


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[session]\nsecret = "short-but-private"\n[redis]\npassword = 12345\n')
    message = str(load_error(path))
    assert "session.secret: must be at least 32 characters, got 17 characters" in message
    assert "redis.password: expected a string, got a value of type int" in message
    assert "short-but-private" not in message
    assert "12345" not in message


# --- environment overrides -------------------------------------------------------------------


def test_environment_wins_over_the_file_and_is_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[vm_pool]\nmax_size = 10\n[env]\nscim_base = "https://file"\n'
        '[security.custom_patterns]\nemployee_id = "EMP\\\\d{6}"\n',
    )
    config = load_config(
        path,
        environ={
            "NFLOW_VM_POOL__MAX_SIZE": "20",
            "NFLOW_VM_POOL__ENABLE_METRICS": "1",
            "NFLOW_TRACKER__ENABLED": "TRUE",
            "NFLOW_LIMITS__REQUEST_TIMEOUT_SECONDS": "2.5",
            "NFLOW_RATE_LIMIT__EXCLUDED_PATHS": "/a, /b",
            "NFLOW_SECURITY__ALWAYS_ENCRYPT_FIELDS": "pin,cvv",
            "NFLOW_DATABASE_NFLOW__DSN": "/data/nflow.sqlite",
            "NFLOW_ENV__SCIM_BASE": "https://env",
            "NFLOW_ENV__OPENID_BASE": "https://openid",
            "NFLOW_SECURITY__CUSTOM_PATTERNS__BADGE": "B-\\d+",
            "NFLOW_MAIL__FROM": "ops@example.com",
            "NFLOW_LOGGING__LEVEL": "WARN",
        },
    )
    assert config.vm_pool.max_size == 20
    assert config.vm_pool.enable_metrics is True
    assert config.tracker.enabled is True
    assert config.limits.request_timeout_seconds == 2.5
    assert config.rate_limit.excluded_paths == ("/a", "/b")
    assert config.security.always_encrypt_fields == ("pin", "cvv")
    assert config.database_url == "sqlite+aiosqlite:////data/nflow.sqlite"
    assert config.env == {"scim_base": "https://env", "openid_base": "https://openid"}
    assert config.security.custom_patterns == {"employee_id": r"EMP\d{6}", "badge": r"B-\d+"}
    assert config.mail.from_ == "ops@example.com"
    assert config.logging.level == "warning"


def test_bad_environment_value_names_the_variable() -> None:
    error = load_error(NFLOW_VM_POOL__MAX_SIZE="x")
    assert str(error) == 'NFLOW_VM_POOL__MAX_SIZE: expected an integer, got "x"'
    assert error.key == "vm_pool.max_size"
    assert str(load_error(NFLOW_DEBUG__ENABLED="maybe")) == (
        'NFLOW_DEBUG__ENABLED: expected true or false, got "maybe"'
    )
    assert str(load_error(NFLOW_LIMITS__STEP_TIMEOUT_SECONDS="nan")) == (
        'NFLOW_LIMITS__STEP_TIMEOUT_SECONDS: expected a number, got "nan"'
    )
    assert str(load_error(NFLOW_SERVER__WORKERS="-1")) == (
        "NFLOW_SERVER__WORKERS: must be at least 0, got -1"
    )


def test_unknown_environment_key_names_the_variable() -> None:
    assert str(load_error(NFLOW_VM_POOL__MAX_SISE="3")) == (
        "NFLOW_VM_POOL__MAX_SISE: unknown key vm_pool.max_sise (did you mean max_size?)"
    )
    assert str(load_error(NFLOW_VMPOOL__MAX_SIZE="3")) == (
        "NFLOW_VMPOOL__MAX_SIZE: unknown section vmpool (did you mean vm_pool?)"
    )


def test_environment_variables_that_are_not_overrides_are_ignored() -> None:
    config = load_config(
        environ={"NFLOW_TEMPLATE_PATH": "/tpl", "NFLOE_TRIGGERS_FOLD": "/t", "PATH": "/bin"}
    )
    assert config == Config()


def test_with_overrides_for_command_line_flags() -> None:
    config = load_config(environ={"NFLOW_SERVER__PORT": "9000"})
    updated = with_overrides(
        config, {"server.port": 9100, "server.workers": 2, "server.host": None}
    )
    assert (updated.server.port, updated.server.workers) == (9100, 2)
    assert config.server.port == 9000
    with pytest.raises(ConfigError) as caught:
        with_overrides(config, {"server.port": 70000}, origin="--port")
    assert str(caught.value) == "--port (server.port): must be at most 65535, got 70000"


# --- redaction -------------------------------------------------------------------------------


SECRETS = {
    "redis_pw": "redis-pw-1",
    "twilio": "twilio-token-2",
    "mail": "mail-pw-3",
    "debug": "debug-token-4",
    "enc": "encryption-key-5",
    "session": "session-secret-6-" + "x" * 20,
    "dsn_pg": "pg-pw-7",
    "dsn_kv": "kv pw 8",
    "pg_session": "pgsess-pw-9",
    "database": "mysql-pw-10",
    "mongo": "mongo-pw-11",
    "env_key": "env-api-key-12",
    "url_base": "urlbase-pw-13",
}


def secret_config(tmp_path: Path, dsn: str) -> Config:
    s = SECRETS
    text = f"""
    [database_nflow]
    driver = "postgres"
    dsn = {json.dumps(dsn)}
    [redis]
    host = "redis.internal:6379"
    password = "{s["redis_pw"]}"
    [twilio]
    enable = true
    account_sid = "AC123"
    auth_token = "{s["twilio"]}"
    verify_service_id = "VA123"
    [mail]
    smtp = "smtp.example.com"
    password = "{s["mail"]}"
    [debug]
    enabled = true
    auth_token = "{s["debug"]}"
    [security]
    enable_encryption = true
    encryption_key = "{s["enc"]}"
    [session]
    secret = "{s["session"]}"
    [pg_session]
    url = "postgres://app:{s["pg_session"]}@db/sessions"
    [database]
    url = "root:{s["database"]}@tcp(127.0.0.1:3306)/legacy"
    [mongo]
    url = "mongodb://app:{s["mongo"]}@mongo:27017/?authSource=admin"
    [url]
    url_base = "https://bot:{s["url_base"]}@example.com/base"
    [env]
    scim_base = "https://localhost:8443"
    PAYMENTS_API_KEY = "{s["env_key"]}"
    """
    return load_config(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgres://nflow:{SECRETS['dsn_pg']}@db.internal:5432/nflow?sslmode=disable",
        f"host=db.internal user=nflow password='{SECRETS['dsn_kv']}' dbname=nflow",
        f"postgresql://nflow@db.internal/nflow?password={SECRETS['dsn_pg']}",
    ],
)
def test_redacted_hides_every_secret(tmp_path: Path, dsn: str) -> None:
    config = secret_config(tmp_path, dsn)
    dumped = json.dumps(redacted(config))

    for secret in SECRETS.values():
        assert secret not in dumped
    for part in ("kv", "pw", "8"):  # the pieces of the quoted libpq password
        assert f"password='{part}" not in dumped
    data: dict[str, Any] = redacted(config)
    assert data["redis"] == {
        "host": "redis.internal:6379",
        "password": "***",
        "maxconnectionpool": 0,
        "db": 0,
        "prefix": "nflow:",
    }
    # Only the password part of connection strings is hidden; the rest helps debugging.
    assert "db.internal" in json.dumps(data["database_nflow"])
    assert data["pg_session"] == {"url": "postgres://app:***@db/sessions"}
    assert data["database"]["url"] == "root:***@tcp(127.0.0.1:3306)/legacy"
    assert data["mongo"] == {"url": "mongodb://app:***@mongo:27017/?authSource=admin"}
    assert data["url"] == {"url_base": "https://bot:***@example.com/base"}
    assert data["env"] == {"scim_base": "https://localhost:8443", "PAYMENTS_API_KEY": "***"}
    assert data["mail"]["from"] == ""
    assert data["twilio"]["account_sid"] == "AC123"


def test_redacted_leaves_unset_secrets_empty() -> None:
    data: dict[str, Any] = redacted(load_config(environ={}))
    assert data["redis"]["password"] == ""
    assert data["session"]["secret"] == ""
    json.dumps(data)  # plain data only


# --- database URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "dsn", "url"),
    [
        ("sqlite3", "nflow.db", "sqlite+aiosqlite:///nflow.db"),
        ("sqlite", "/abs/path/app.sqlite", "sqlite+aiosqlite:////abs/path/app.sqlite"),
        ("sqlite3", ":memory:", "sqlite+aiosqlite:///:memory:"),
        (
            "sqlite3",
            "file:app.db?cache=shared",
            "sqlite+aiosqlite:///file:app.db?cache=shared&uri=true",
        ),
        ("sqlite3", "sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        (
            "postgres",
            "postgres://user@host:5432/db?sslmode=disable",
            "postgresql+asyncpg://user@host:5432/db",
        ),
        (
            "postgres",
            "postgresql://user:p%40ss@host/db?sslmode=require",
            "postgresql+asyncpg://user:p%40ss@host/db?ssl=require",
        ),
        (
            "postgres",
            "host=127.0.0.1 port=5432 user=x dbname=test sslmode=disable",
            "postgresql+asyncpg://x@127.0.0.1:5432/test",
        ),
        (
            "postgres",
            "postgres:///db?host=/tmp/pg&user=me&password=pw&port=6543",
            "postgresql+asyncpg://me:pw@:6543/db?host=%2Ftmp%2Fpg",
        ),
        (
            "postgres",
            "host=/var/run/postgresql user=x dbname=test sslmode=verify-full",
            "postgresql+asyncpg://x@/test?host=%2Fvar%2Frun%2Fpostgresql&ssl=verify-full",
        ),
    ],
)
def test_database_url(driver: str, dsn: str, url: str) -> None:
    config = load_config(
        environ={"NFLOW_DATABASE_NFLOW__DRIVER": driver, "NFLOW_DATABASE_NFLOW__DSN": dsn}
    )
    assert config.database_url == url


def test_database_url_keeps_a_quoted_libpq_password() -> None:
    from sqlalchemy.engine import make_url

    config = load_config(
        environ={
            "NFLOW_DATABASE_NFLOW__DRIVER": "postgres",
            "NFLOW_DATABASE_NFLOW__DSN": r"host=h user=x password='a b\'c' dbname=d",
        }
    )
    assert make_url(config.database_url).password == "a b'c"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgres://h/db?application_name=x", 'parameter "application_name" is not supported'),
        ("postgres://h/db?sslmode=sometimes", 'unknown sslmode "sometimes"'),
        ("mysql://h/db", "expected a postgres:// or postgresql:// URL"),
        ("host=h port=abc", 'port must be a number, got "abc"'),
        ("postgres://h/db?sslrootcert=/ca.pem", 'parameter "sslrootcert" is not supported'),
        ("nflow.db", "expected a PostgreSQL DSN (postgres://user@host/db or host=... dbname=..."),
    ],
)
def test_unusable_postgres_dsn_is_rejected_at_load(dsn: str, expected: str) -> None:
    error = load_error(NFLOW_DATABASE_NFLOW__DRIVER="postgres", NFLOW_DATABASE_NFLOW__DSN=dsn)
    assert str(error).startswith("NFLOW_DATABASE_NFLOW__DSN: ")
    assert expected in str(error)


# --- reload ----------------------------------------------------------------------------------


def test_restart_required_keys(tmp_path: Path) -> None:
    old = load_config(write(tmp_path, "[server]\nport = 8080\n", "old.toml"), environ={})
    new = load_config(
        write(
            tmp_path,
            f"""
            [server]
            port = 9090
            [database_nflow]
            dsn = "other.db"
            [session]
            secret = "{SECRET_SESSION}"
            [rate_limit]
            ip_rate_limit = 5
            [env]
            scim_base = "https://new"
            """,
            "new.toml",
        ),
        environ={},
    )
    assert restart_required_keys(old, new) == [
        "database_nflow.dsn",
        "server.port",
        "session.secret",
    ]
    assert changed_keys(old, new) == [
        "database_nflow.dsn",
        "env.scim_base",
        "rate_limit.ip_rate_limit",
        "server.port",
        "session.secret",
    ]
    assert restart_required_keys(new, new) == []
    assert "redis.host" in RESTART_REQUIRED_KEYS


# --- documentation ---------------------------------------------------------------------------


def test_reference_documents_every_key_and_nothing_else() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "config.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_<>]+)` \|", docs, flags=re.MULTILINE))
    expected = {"env.<name>"}
    for section, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            expected |= {
                f"{section}.{sub.alias or name}" for name, sub in model.model_fields.items()
            }
    assert documented == expected
