"""Fail-closed security at the process level: a deployment that forgets DJANGO_DEBUG runs as production, refuses
dangerous settings naming them, passes ``check --deploy``, never prints a credential, and installs hashed
requirements."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, manage, subprocess_env

PROD_KEY = "k8Hq2vX9pL4mN7rT1wZ5yB3cF6gJ0dS8aE2uI9oP4lK7jH1nM5bV3xC6zQ"
SECRET = "Sup3r-s3cret-pw"


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """A child with no DJANGO_* variable at all (DJANGO_DEBUG unset) unless ``env`` sets one."""
    return run_without((), args, **env)


def run_without(unset: tuple[str, ...], args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """:func:`run`, with the variables in ``unset`` removed from the child's environment as well."""
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALERT_", "API_")) and k not in unset
    }
    child_env.update(env)
    return subprocess.run(args, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120, check=False)


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'cryptoproject.settings'; django.setup()\n"
    return run([sys.executable, "-c", prelude + code], **env)


PRODUCTION = {"DJANGO_SECRET_KEY": PROD_KEY, "DJANGO_ALLOWED_HOSTS": "dash.example.com"}


# --------------------------------------------------------------------------------------------- finding 1
def test_without_django_debug_the_app_is_production_and_hides_its_secrets() -> None:
    """The probe of the finding: a foreign Host header with DJANGO_DEBUG unset."""
    code = """
from django.test import Client
from django.conf import settings
r = Client().get("/", HTTP_HOST="203.0.113.7")
print(json.dumps({"status": r.status_code, "body": r.content.decode(errors="replace"), "debug": settings.DEBUG,
                  "login": settings.DASHBOARD_LOGIN_REQUIRED}))
"""
    result = python(
        "import json\n" + code,
        **PRODUCTION,
        DATABASE_URL=f"postgres://crypto:{SECRET}@127.0.0.1:1/crypto",
        REDIS_URL=f"redis://:{SECRET}@127.0.0.1:1/0",
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["status"] == 400
    assert probe["debug"] is False
    assert probe["login"] is True
    assert SECRET not in probe["body"]
    assert "DATABASE_URL" not in probe["body"]
    assert SECRET not in result.stderr


def test_without_django_debug_a_secret_key_is_required() -> None:
    result = run(manage("check"), DJANGO_ALLOWED_HOSTS="dash.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_without_django_debug_a_database_url_is_required() -> None:
    """Production never falls back to the development stack's database and its well-known credentials."""
    result = run_without(("DATABASE_URL",), manage("check"), **PRODUCTION)
    assert result.returncode != 0
    assert "DATABASE_URL must be set" in result.stderr
    # Debug mode (make demo, the Procfiles) keeps the development stack's default.
    result = run_without(("DATABASE_URL",), manage("check"), DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + "x" * 60}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS"),
        ({"ALERT_WEBHOOK_ALLOW_PRIVATE": "true"}, "ALERT_WEBHOOK_ALLOW_PRIVATE"),
        ({"DJANGO_EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, "DJANGO_EMAIL_BACKEND"),
        ({"DJANGO_DEBUG": "true", "DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS"),
        ({"DASHBOARD_LOGIN_REQUIRED": "false"}, "DASHBOARD_LOGIN_REQUIRED"),
        ({"DASHBOARD_LOGIN_REQUIRED": "false", "DASHBOARD_PUBLIC_READONLY": "false"}, "DASHBOARD_PUBLIC_READONLY"),
    ],
)
def test_production_refuses_dangerous_combinations_naming_them(env: dict[str, str], named: str) -> None:
    result = run(manage("check"), **{**PRODUCTION, **env})
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert named in result.stderr


@pytest.mark.django_db
def test_check_deploy_is_clean_with_debug_unset() -> None:
    result = run(
        manage("check", "--deploy", "--fail-level", "WARNING"),
        **PRODUCTION,
        DATABASE_URL=subprocess_env()["DATABASE_URL"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_an_open_dashboard_in_production_needs_the_explicit_opt_in() -> None:
    code = (
        "from django.conf import settings; print(settings.DASHBOARD_LOGIN_REQUIRED, settings.DASHBOARD_PUBLIC_READONLY)"
    )
    result = python(code, **PRODUCTION, DASHBOARD_LOGIN_REQUIRED="false", DASHBOARD_PUBLIC_READONLY="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False True"


def test_env_example_ships_no_open_production_config() -> None:
    """The example file as a deployment's dotenv, with only the secret key and host added: it starts, login on."""
    code = "from django.conf import settings; print(settings.DEBUG, settings.DASHBOARD_LOGIN_REQUIRED)"
    result = python(code, **PRODUCTION, DOTENV_FILE=str(ROOT / ".env.example"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False True"


# --------------------------------------------------------------------------------------------- finding 9
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRADE_RETENTION_DAYS": "0"}, "TRADE_RETENTION_DAYS"),
        ({"TRADE_RETENTION_DAYS": "-3"}, "TRADE_RETENTION_DAYS"),
        ({"WHALE_THRESHOLD_USD": "0"}, "WHALE_THRESHOLD_USD"),
        ({"WHALE_THRESHOLD_USD": "-100"}, "WHALE_THRESHOLD_USD"),
        ({"WHALE_THRESHOLD_USD": "NaN"}, "WHALE_THRESHOLD_USD"),
        ({"ALERT_WEBHOOK_ALLOWED_PORTS": "443,70000"}, "ALERT_WEBHOOK_ALLOWED_PORTS"),
        ({"ALERT_WEBHOOK_ALLOWED_PORTS": "https"}, "ALERT_WEBHOOK_ALLOWED_PORTS"),
        ({"DJANGO_TRUSTED_PROXY_COUNT": "-1"}, "DJANGO_TRUSTED_PROXY_COUNT"),
        ({"DATABASE_WEB_STATEMENT_TIMEOUT_MS": "-1"}, "DATABASE_WEB_STATEMENT_TIMEOUT_MS"),
        ({"AXES_FAILURE_LIMIT": "0"}, "AXES_FAILURE_LIMIT"),
        ({"ALERTS_MAX_RULES_PER_USER": "0"}, "ALERTS_MAX_RULES_PER_USER"),
        ({"AXES_ADDRESS_FAILURE_LIMIT": "4"}, "AXES_ADDRESS_FAILURE_LIMIT"),  # below AXES_FAILURE_LIMIT (5)
    ],
)
def test_settings_that_would_destroy_data_are_refused(env: dict[str, str], named: str) -> None:
    result = run(manage("check"), DJANGO_DEBUG="true", **env)
    assert result.returncode != 0
    assert named in result.stderr


# --------------------------------------------------------------------------------------------- finding 11
def test_production_defaults_for_operations() -> None:
    code = """
from django.conf import settings
print(json.dumps({"conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
                  "proxy_ssl": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
                  "num_proxies": settings.REST_FRAMEWORK["NUM_PROXIES"],
                  "metrics": settings.METRICS_BIND_ADDRESS}))
"""
    plain = python("import json\n" + code, **PRODUCTION)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout.strip().splitlines()[-1]) == {
        "conn_max_age": 0,
        "proxy_ssl": None,
        "num_proxies": 0,
        "metrics": "127.0.0.1",
    }
    proxied = python("import json\n" + code, **PRODUCTION, DJANGO_TRUSTED_PROXY_COUNT="1")
    values = json.loads(proxied.stdout.strip().splitlines()[-1])
    assert values["proxy_ssl"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["num_proxies"] == 1


# --------------------------------------------------------------------------------------------- finding 2
def test_check_stack_and_healthz_never_print_credentials() -> None:
    redis_url = f"redis://:{SECRET}@127.0.0.1:1/0"
    result = run(manage("check_stack", "--timeout", "2"), DJANGO_DEBUG="true", REDIS_URL=redis_url)
    assert result.returncode != 0
    assert "REDIS_URL=redis://127.0.0.1:1/0" in result.stderr
    assert SECRET not in result.stdout + result.stderr

    database_url = f"postgres://crypto:{SECRET}@127.0.0.1:1/crypto"
    failed = run(manage("check_stack"), DJANGO_DEBUG="true", DATABASE_URL=database_url)
    assert failed.returncode != 0
    assert SECRET not in failed.stdout + failed.stderr

    code = (
        "from django.test import Client\n"
        "r = Client().get('/healthz', HTTP_HOST='127.0.0.1')\n"
        "print(r.status_code, r.content.decode())"
    )
    healthz = python(code, DJANGO_DEBUG="true", DATABASE_URL=database_url)
    assert healthz.returncode == 0, healthz.stderr
    assert healthz.stdout.strip().splitlines()[-1] == '503 {"status": "error", "database": "unreachable"}'
    assert SECRET not in healthz.stdout + healthz.stderr
    assert "127.0.0.1:1" in healthz.stderr  # the operator's log names the host


# --------------------------------------------------------------------------------------------- finding 12
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)")


@pytest.mark.parametrize("name", ["base.txt", "dev.txt"])
def test_every_requirement_is_pinned_with_hashes(name: str) -> None:
    text = (ROOT / "requirements" / name).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9#])", text)
    pinned = 0
    for block in blocks:
        if not block.strip() or block.startswith("#"):
            continue
        assert _PIN.match(block), f"{name}: not pinned: {block.splitlines()[0]}"
        assert "--hash=sha256:" in block, f"{name}: no hash: {block.splitlines()[0]}"
        pinned += 1
    assert pinned > 40
    if name == "base.txt":
        assert re.search(r"^django-axes==8\.3\.1 ", text, re.M)


def test_setup_and_image_install_with_require_hashes() -> None:
    assert "pip install --require-hashes -r requirements/base.txt" in (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in (ROOT / "Makefile").read_text()
    assert "--generate-hashes" in (ROOT / "scripts" / "lock.sh").read_text()


def test_local_runs_set_debug_explicitly() -> None:
    """The settings fail closed; what runs locally says DJANGO_DEBUG=true itself."""
    for procfile in ("Procfile", "Procfile.live"):
        lines = [line for line in (ROOT / procfile).read_text().splitlines() if line and not line.startswith("#")]
        assert lines
        assert all(": env DJANGO_DEBUG=true " in line for line in lines), procfile
    makefile = (ROOT / "Makefile").read_text()
    assert "DJANGO_DEBUG ?= true" in makefile
    assert "export DJANGO_DEBUG" in makefile
    assert 'DJANGO_DEBUG: "true"' in (ROOT / "docker-compose.yml").read_text()
    assert subprocess_env()["DJANGO_DEBUG"] == "true"  # the test suite (tests/settings.py)
