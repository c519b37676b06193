"""Data-quality alerts (``weir.alerts``, settings ``weir.config.alert_settings``) against real
servers on 127.0.0.1 started here: an HTTP receiver standing in for a Slack incoming webhook
(``http.server.ThreadingHTTPServer``, recording each body and answering scripted statuses)
and an SMTP server (aiosmtpd). Nothing of urllib, httpx or smtplib is mocked.

    .venv/bin/python -m pytest tests/test_alerts.py
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import weir
from weir import alerts
from weir.config import AlertSettings, alert_settings
from weir.logs import json_logger, level_for, log_event

pytestmark = pytest.mark.integration

SAMPLE_IDS = ["6f1c2a9e-evt-1", "6f1c2a9e-evt-2", "6f1c2a9e-evt-3"]
ALERT = alerts.Alert(
    title="raw.shop_events: 1 critical expectation failed",
    text="Run q-42 checked snapshots 7..9 of raw.shop_events: 3 of 1000 rows failed.",
    severity="critical",
    run_id="q-42",
    details=[
        {
            "table": "raw.shop_events",
            "expectation": "expect_column_values_to_not_be_null",
            "column": "user_id",
            "unexpected_count": 3,
            "sample_ids": SAMPLE_IDS,
        }
    ],
    links={"Data Docs": "http://127.0.0.1/quality/q-42/index.html"},
)


def email_settings(port: int) -> dict[str, object]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "email_from": "weir@example.org",
        "email_to": ("data-team@example.org", "oncall@example.org"),
    }


def log_lines(capfd: pytest.CaptureFixture[str], event: str) -> list[dict]:
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_each_channel_gets_one_notification_with_the_details(receiver, mailbox, capfd):
    recorder, port = mailbox
    settings = AlertSettings(webhook_url=receiver.url, **email_settings(port))

    deliveries = alerts.send(ALERT, settings)

    assert deliveries == [
        alerts.Delivery("webhook", ok=True, attempts=1),
        alerts.Delivery("email", ok=True, attempts=1),
    ]
    (body,) = receiver.bodies
    assert ALERT.title in body["text"] and "critical" in body["text"]
    sections = [block["text"]["text"] for block in body["blocks"]]
    assert all(block["type"] == "section" for block in body["blocks"])
    assert all(block["text"]["type"] == "mrkdwn" for block in body["blocks"])
    shown = "\n".join(sections)
    for fact in (
        ALERT.title,
        "q-42",
        "user_id",
        "expect_column_values_to_not_be_null",
        "3 unexpected",
    ):
        assert fact in shown
    assert all(sample_id in shown for sample_id in SAMPLE_IDS)
    assert f"<{ALERT.links['Data Docs']}|Data Docs>" in shown

    ((mail_from, rcpt_tos, message),) = recorder.messages
    assert mail_from == "weir@example.org"
    assert rcpt_tos == ["data-team@example.org", "oncall@example.org"]
    assert message["Subject"] == f"[weir] critical: {ALERT.title}"
    assert message.get_content_type() == "text/plain"
    text = message.get_content()
    for fact in (ALERT.text, "q-42", "raw.shop_events.user_id", "3 unexpected"):
        assert fact in text
    assert all(sample_id in text for sample_id in SAMPLE_IDS)
    assert ALERT.links["Data Docs"] in text

    sent = log_lines(capfd, "alert_sent")
    assert [(line["channel"], line["attempts"]) for line in sent] == [("webhook", 1), ("email", 1)]
    assert all(line["component"] == "alerts" and line["run_id"] == "q-42" for line in sent)


def test_a_receiver_failing_twice_is_retried_until_it_takes_the_alert(receiver):
    receiver.statuses = [500, 500]
    settings = AlertSettings(webhook_url=receiver.url, retry_backoff_seconds=0.01)

    assert alerts.send(ALERT, settings) == [alerts.Delivery("webhook", ok=True, attempts=3)]
    assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]


def test_a_channel_that_is_down_is_reported_and_logged_without_raising(closed_port, mailbox, capfd):
    recorder, smtp_port = mailbox
    settings = AlertSettings(
        webhook_url=f"http://127.0.0.1:{closed_port}/services/T/B/secret-token",
        **email_settings(smtp_port),
        retries=3,
        retry_backoff_seconds=0.1,
    )
    started = time.monotonic()

    webhook, email = alerts.send(ALERT, settings)

    assert time.monotonic() - started >= 0.1 + 0.2  # waited between attempts, doubling
    assert (webhook.channel, webhook.ok, webhook.attempts) == ("webhook", False, 3)
    assert "refused" in webhook.error.lower() and "secret-token" not in webhook.error
    assert email == alerts.Delivery("email", ok=True, attempts=1)  # the other channel still works
    assert len(recorder.messages) == 1
    (failed,) = log_lines(capfd, "alert_failed")
    assert failed["level"] == "ERROR" and failed["component"] == "alerts"
    assert failed["channel"] == "webhook" and failed["attempts"] == 3
    assert failed["error"] == webhook.error and failed["run_id"] == "q-42"
    assert failed["timestamp"].endswith("+00:00")


def test_a_receiver_that_does_not_answer_in_time_fails_with_a_timeout(receiver, closed_port):
    receiver.delay = 0.5
    settings = AlertSettings(
        webhook_url=receiver.url,
        **email_settings(closed_port),
        retries=2,
        timeout_seconds=0.1,
        retry_backoff_seconds=0.01,
    )

    webhook, email = alerts.send(ALERT, settings)

    assert (webhook.ok, webhook.attempts) == (False, 2) and "timed out" in webhook.error
    assert len(receiver.bodies) == 2
    assert (email.ok, email.attempts) == (False, 2) and "refused" in email.error.lower()


def test_no_channel_configured_sends_and_logs_nothing(capfd):
    assert AlertSettings().channels == ()
    assert alerts.send(ALERT, AlertSettings()) == []
    assert capfd.readouterr().err == ""


def test_json_logger_is_set_up_once_and_writes_one_object_per_line(capfd):
    first = json_logger("weir.alerts_test.sub")
    again = json_logger("weir.alerts_test.sub")
    assert again is first and len(first.handlers) == 1
    assert first.level == logging.INFO and first.propagate is False
    log_event(first, "checked", logging.WARNING, table="raw.t", rows=3, at=Path("/x"))
    first.debug("not shown")
    (line,) = capfd.readouterr().err.splitlines()
    record = json.loads(line)
    assert record.pop("timestamp").endswith("+00:00")
    assert record == {
        "level": "WARNING",
        "component": "alerts_test",
        "event": "checked",
        "table": "raw.t",
        "rows": 3,
        "at": "/x",
    }


# -- settings -------------------------------------------------------------------------------


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Writes ``weir.toml`` and points ``WEIR_CONFIG`` at it."""
    path = tmp_path / "weir.toml"
    monkeypatch.setenv("WEIR_CONFIG", str(path))

    def write(text: str) -> Path:
        path.write_text(text)
        return path

    write("")
    return write


def test_defaults():
    settings = alert_settings({})
    assert settings == AlertSettings()
    assert (settings.smtp_port, settings.smtp_starttls, settings.retries) == (25, False, 3)
    assert (settings.timeout_seconds, settings.retry_backoff_seconds) == (5.0, 0.5)
    assert settings.channels == () and settings.source == "defaults"


def test_settings_from_toml_and_variables_the_variables_winning(toml):
    path = toml(
        """
[alerts]
webhook_url = "https://hooks.example.org/services/from-toml"
smtp_host = "mail.example.org"
smtp_port = 587
smtp_starttls = true
smtp_username = "weir"
smtp_password = "toml-password"
email_from = "weir@example.org"
email_to = ["a@example.org", "b@example.org"]
retries = 5
"""
    )
    from_toml = alert_settings({})
    assert from_toml.webhook_url == "https://hooks.example.org/services/from-toml"
    assert (from_toml.smtp_host, from_toml.smtp_port, from_toml.smtp_starttls) == (
        "mail.example.org",
        587,
        True,
    )
    assert from_toml.email_to == ("a@example.org", "b@example.org")
    assert from_toml.retries == 5 and from_toml.channels == ("webhook", "email")
    assert from_toml.source == f"defaults < {path}"

    env = {
        "WEIR_ALERT_WEBHOOK_URL": "https://hooks.example.org/services/from-env",
        "WEIR_ALERT_EMAIL_TO": "c@example.org, d@example.org",
        "WEIR_ALERT_SMTP_STARTTLS": "no",
        "WEIR_ALERT_TIMEOUT_SECONDS": "2.5",
        "WEIR_ALERT_SMTP_PORT": "",  # empty: unset
    }
    both = alert_settings(env)
    assert both.webhook_url == "https://hooks.example.org/services/from-env"
    assert both.email_to == ("c@example.org", "d@example.org")
    assert both.smtp_starttls is False and both.timeout_seconds == 2.5
    assert both.smtp_port == 587 and both.retries == 5  # from the file
    assert both.source == (
        f"defaults < {path} < WEIR_ALERT_WEBHOOK_URL < WEIR_ALERT_SMTP_STARTTLS "
        "< WEIR_ALERT_EMAIL_TO < WEIR_ALERT_TIMEOUT_SECONDS"
    )

    toml('[alerts]\nsmtp_host = "m"\nemail_from = "w@x.org"\nemail_to = "a@x.org,b@x.org"\n')
    assert alert_settings({}).email_to == ("a@x.org", "b@x.org")  # a string in TOML too


# (weir.toml [alerts] lines, variables, the error's setting ({path}: the file), words in it)
BAD_SETTINGS = {
    "port not a number": ("", {"WEIR_ALERT_SMTP_PORT": "twenty"}, "WEIR_ALERT_SMTP_PORT", "whole"),
    "port out of range": ("smtp_port = 70000", {}, "{path}: alerts.smtp_port", "65535"),
    "unknown key": ("webhook = 'https://x.org'", {}, "{path}: alerts.webhook", "unknown"),
    "unknown variable": (
        "",
        {"WEIR_ALERT_WEBHOOK": "https://x.org"},
        "WEIR_ALERT_WEBHOOK",
        "unknown",
    ),
    "ftp webhook": ("webhook_url = 'ftp://x.org/a'", {}, "{path}: alerts.webhook_url", "http"),
    "webhook without host": (
        "",
        {"WEIR_ALERT_WEBHOOK_URL": "https:///a"},
        "WEIR_ALERT_WEBHOOK_URL",
        "host",
    ),
    "starttls maybe": (
        "",
        {"WEIR_ALERT_SMTP_STARTTLS": "maybe"},
        "WEIR_ALERT_SMTP_STARTTLS",
        "true or false",
    ),
    "retries 0": ("retries = 0", {}, "{path}: alerts.retries", "at least 1"),
    "timeout 0": (
        "",
        {"WEIR_ALERT_TIMEOUT_SECONDS": "0"},
        "WEIR_ALERT_TIMEOUT_SECONDS",
        "more than 0",
    ),
    "negative backoff": (
        "retry_backoff_seconds = -1",
        {},
        "{path}: alerts.retry_backoff_seconds",
        "at least 0",
    ),
    "bad recipient": (
        "",
        {"WEIR_ALERT_EMAIL_TO": "a@x.org, nobody"},
        "WEIR_ALERT_EMAIL_TO",
        "'nobody'",
    ),
    "email without sender or recipient": (
        "smtp_host = 'mail.x.org'",
        {},
        "{path}: alerts.smtp_host",
        "email_from, email_to",
    ),
    "email without server": (
        "",
        {"WEIR_ALERT_EMAIL_TO": "a@x.org", "WEIR_ALERT_EMAIL_FROM": "w@x.org"},
        "WEIR_ALERT_EMAIL_FROM",
        "smtp_host",
    ),
    "username without password": (
        "smtp_host = 'm'\nemail_from = 'w@x.org'\nemail_to = 'a@x.org'\nsmtp_username = 'u'",
        {},
        "{path}: alerts.smtp_username",
        "smtp_password",
    ),
    "alerts not a table": ("", {}, "{path}: alerts", "table"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_bad_settings_raise_config_errors_naming_their_origin(toml, case: str):
    lines, env, setting, words = BAD_SETTINGS[case]
    text = "alerts = 1\n" if case == "alerts not a table" else f"[alerts]\n{lines}\n"
    path = toml(text)
    with pytest.raises(weir.ConfigError) as info:
        alert_settings(env)
    assert info.value.setting == setting.format(path=path)
    assert str(info.value).startswith(f"{info.value.setting}: ") and words in str(info.value)


def test_passwords_and_webhook_secrets_never_appear_in_messages_or_repr(toml):
    secrets = ("pa55-word-9", "T0/B0/secret-token")
    toml(f"[alerts]\nsmtp_password = '{secrets[0]}'\nsmtp_port = 0\n")
    with pytest.raises(weir.ConfigError) as port:
        alert_settings({})
    with pytest.raises(weir.ConfigError) as incomplete:
        alert_settings({"WEIR_ALERT_SMTP_PORT": "25"})
    toml(f"[alerts]\nsmtp_password = ['{secrets[0]}']\n")  # not a string
    with pytest.raises(weir.ConfigError) as bad_password:
        alert_settings({})
    toml("")
    settings = alert_settings(
        {
            "WEIR_ALERT_WEBHOOK_URL": f"https://hooks.example.org/services/{secrets[1]}",
            "WEIR_ALERT_SMTP_HOST": "mail.example.org",
            "WEIR_ALERT_SMTP_USERNAME": "weir",
            "WEIR_ALERT_SMTP_PASSWORD": secrets[0],
            "WEIR_ALERT_EMAIL_FROM": "weir@example.org",
            "WEIR_ALERT_EMAIL_TO": "a@example.org",
        }
    )
    assert settings.smtp_password == secrets[0]  # kept, only not shown
    shown = [str(e.value) for e in (port, incomplete, bad_password)] + [repr(settings)]
    assert "hooks.example.org" in shown[-1] and "***" in shown[-1]
    for text in shown:
        assert not any(secret in text for secret in secrets), text


def test_weir_log_sets_the_python_loggers_levels(monkeypatch, capfd):
    assert level_for("weir.alerts", "") == logging.INFO
    assert level_for("weir.alerts", "error") == logging.ERROR
    assert level_for("weir.alerts", "warn,weir.alerts=debug") == logging.DEBUG
    assert level_for("weir.alerts.sub", "info,weir::alerts=error") == logging.ERROR
    assert level_for("weir.alertsx", "info,weir.alerts=error") == logging.INFO
    assert level_for("weir.api.access", "weir=warn,weir.api=error,debug") == logging.ERROR
    assert level_for("weir.quality", "weir_planner=debug") == logging.INFO
    assert level_for("weir.quality", "off") > logging.CRITICAL
    assert level_for("weir.quality", "loud,error") == logging.ERROR
    monkeypatch.setenv("WEIR_LOG", "error")
    quiet = json_logger("weir.alerts_test.quiet")
    log_event(quiet, "routine")
    log_event(quiet, "broken", logging.ERROR)
    (line,) = capfd.readouterr().err.splitlines()
    assert json.loads(line)["event"] == "broken"
